"""Logging a model and loading it back: the one safe loader, and ``models:/`` URIs.

* ``log_model``: the fitted Pipeline on the active run, saved with skops (never pickle),
  with a signature built from the schema, an input example, explicit requirements and
  mlcycle's code (``code_paths``), so the custom transformers load anywhere.
* ``load_model``: every mlcycle path that loads a model (predict, promote, monitor, the
  step cache) goes through it: skops only, with mlcycle's own allowlist ``TRUSTED_TYPES``,
  never the list written in the model's MLmodel file; pickle/cloudpickle are refused.
* ``parse_model_uri`` / ``resolve_uri``: ``models:/<name>/<version>`` and
  ``models:/<name>@<alias>`` to a registered version.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

import mlcycle
from mlcycle.config.schema import Task
from mlcycle.core.data import Schema
from mlcycle.errors import MlcycleError, first_line

# Types (beyond skops' defaults) that a model Pipeline may contain. Adding an estimator or a
# transformer with new internals means adding its types here, on purpose.
TRUSTED_TYPES = sorted(
    {
        "mlcycle.core.cleaning.TabularCleaner",
        "mlcycle.core.features.DateParts",
        "mlcycle.core.features.DerivedFeatures",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.model_selection._split.KFold",  # TargetEncoder's cross-fitting splitter
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.tree._tree.Tree",
        # models saved before mlcycle's transformers moved to mlcycle.core name the old modules
        "mlcycle.cleaning.TabularCleaner",
        "mlcycle.features.DateParts",
        "mlcycle.features.DerivedFeatures",
    }
)
# old module -> where its classes live now (skops imports a saved type's module by name)
MOVED_MODULES = {"mlcycle.cleaning": "mlcycle.core.cleaning", "mlcycle.features": "mlcycle.core.features"}

MODEL_NAME_IN_RUN = "model"
MODEL_URI_TAG = "mlcycle.model_uri"  # on the register stage's run: the logged model's URI
REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")

class ModelLoadError(MlcycleError):
    """A model cannot be loaded safely (not skops, untrusted types, missing artifact)."""


def pip_requirements() -> list[str]:
    """Exact versions of what loading the model needs. Explicit: inference costs seconds."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def untrusted_types(model) -> list[str]:
    """Types skops would refuse to load from this model without being told to trust them."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


# --------------------------------------------------------------------------- logging a model
_MLFLOW_TYPES = {"numeric": "double", "categorical": "string", "datetime": "datetime"}


def signature_for(schema: Schema, outputs) -> mlflow.models.ModelSignature:
    """Every feature column, typed from the schema and required.

    Not inferred from the input example: a handful of rows would mark any column that
    happened to hold a missing value as optional, and the scoring server would then accept a
    request without it (the model needs every column; missing *values* are imputed).
    """
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec
    from mlflow.types import Schema as MlflowSchema

    inputs = MlflowSchema(
        [ColSpec(_MLFLOW_TYPES[schema.kind_of(c)], c, required=True) for c in schema.features]
    )
    output_schema = infer_signature(outputs).inputs
    return mlflow.models.ModelSignature(inputs=inputs, outputs=output_schema)


def log_model(model, example, schema: Schema) -> mlflow.models.model.ModelInfo:
    """Log the fitted Pipeline on the active run: signature, example, skops, mlcycle code."""
    unknown = [t for t in untrusted_types(model) if t not in TRUSTED_TYPES]
    if unknown:
        raise ValueError(f"model holds types not in model_io.TRUSTED_TYPES: {unknown}")
    with warnings.catch_warnings():
        # the output is class labels or numbers, never missing: MLflow's hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return mlflow.sklearn.log_model(
            model,
            name=MODEL_NAME_IN_RUN,
            signature=signature_for(schema, model.predict(example)),
            input_example=example,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
            code_paths=[str(Path(mlcycle.__file__).parent)],
            metadata={"task": schema.task.value, "target": schema.target, "classes": [str(c) for c in schema.classes]},
        )


# --------------------------------------------------------------------------- loading safely
@dataclass(frozen=True)
class LoadedModel:
    model: object  # the sklearn Pipeline
    uri: str
    task: Task | None
    target: str | None
    inputs: list[tuple[str, str, bool]]  # (column, MLflow type, required) from the signature
    name: str | None = None  # registered model name and version, when the URI names one
    version: str | None = None

    @property
    def classes(self) -> tuple:
        return tuple(getattr(self.model, "classes_", ()))


def load_model(uri: str) -> LoadedModel:
    """Download and load an sklearn model through skops with mlcycle's own allowlist.

    Refuses pickle/cloudpickle models and models whose MLmodel declares trusted types beyond
    ``TRUSTED_TYPES`` (that list is part of the artifact, so it proves nothing by itself).
    """
    from mlflow.models import Model

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        meta = Model.load(local)
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot load model {uri}: {first_line(exc)}") from None
    flavor = meta.flavors.get("sklearn")
    if flavor is None:
        raise ModelLoadError(f"model {uri} has no sklearn flavor (flavors: {', '.join(meta.flavors)})")
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        raise ModelLoadError(f"model {uri} is serialized with {fmt}; mlcycle loads only skops models (no pickle)")
    extra = sorted(set(flavor.get("skops_trusted_types") or ()) - set(TRUSTED_TYPES))
    if extra:
        raise ModelLoadError(f"model {uri} asks to trust types mlcycle does not trust: {extra}")
    try:
        model = load_skops((Path(local) / flavor["pickled_model"]).read_bytes())
    except Exception as exc:  # skops' UntrustedTypesFoundException, a corrupt file, ...
        raise ModelLoadError(f"cannot load model {uri} with skops: {first_line(exc)}") from None
    md = meta.metadata or {}
    inputs = []
    if meta.signature is not None and meta.signature.inputs.has_input_names():
        inputs = [(c.name, _type_name(c.type), bool(c.required)) for c in meta.signature.inputs.inputs]
    task = Task(md["task"]) if md.get("task") in Task._value2member_map_ else None
    name, version = _registered(uri)
    return LoadedModel(model, uri, task, md.get("target"), inputs, name, version)


def load_skops(payload: bytes) -> object:
    """A skops payload, trusting ``TRUSTED_TYPES`` and nothing else (raises otherwise)."""
    import skops.io

    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
    return skops.io.loads(payload, trusted=TRUSTED_TYPES)


def _type_name(t) -> str:
    return getattr(t, "name", str(t))


def _registered(uri: str) -> tuple[str | None, str | None]:
    """(name, version) when ``uri`` names a registered version, else (None, None)."""
    try:
        version = resolve_uri(MlflowClient(), uri)
    except (ValueError, MlcycleError):
        return None, None
    return version.name, str(version.version)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""
    ref = uri.strip().removeprefix("models:/")
    if uri.strip().startswith("models:/"):
        if "@" in ref:
            name, _, alias = ref.partition("@")
            if name and alias:
                return name, None, alias
        else:
            name, _, number = ref.rpartition("/")
            if name and number.isdigit():
                return name, number, None
    raise ValueError(f"expected models:/<name>/<version> or models:/<name>@<alias>, got {uri!r}")


def resolve_uri(client: MlflowClient, uri: str, error: type[MlcycleError] = MlcycleError) -> ModelVersion:
    """The registered version a ``models:/`` URI names; ``error`` (one line) when there is none."""
    try:
        name, version, alias = parse_model_uri(uri)
    except ValueError as exc:
        raise error(str(exc)) from None
    try:
        return client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise error(f"{uri}: no such registered model version ({first_line(exc)})") from None


def score(loaded: LoadedModel, frame: pd.DataFrame, target: str) -> dict[str, float]:
    """All metrics of a loaded model on a labelled frame (raises on incompatible data)."""
    from mlcycle.core.evaluation import compute_metrics, predict_all

    task = loaded.task or Task.regression
    X, y = frame.drop(columns=[target]), frame[target]
    y_pred, proba = predict_all(loaded.model, X, task)
    return compute_metrics(task, y, y_pred, proba, loaded.classes)
