"""Logging a model and loading it back: the one safe loader, and ``models:/`` URIs.

* ``log_model``: the fitted Pipeline on the active run as an mlcycle pyfunc model
  (``flavor.py``: skops, never pickle, plus the input contract), with a signature, an
  input example, explicit requirements and mlcycle's code (``code_paths``).
* ``load_model``: every mlcycle path that loads a model (predict, promote, the gate,
  monitor, serve) goes through it: downloaded into a temporary folder, checked against the
  manifest its registered version carries (``MANIFEST_TAG``, in the tracking database)
  before any file is read, then loaded through skops with mlcycle's own allowlist
  ``TRUSTED_TYPES``, never the list written in the model's MLmodel file; pickle/cloudpickle
  are refused. ``load_skops`` is that allowlist for a payload (the step cache uses it).
  ``load_model_payload`` also returns the verified payload, which a Spark job broadcasts.
* ``parse_model_uri`` / ``resolve_uri``: ``models:/<name>/<version>`` and
  ``models:/<name>@<alias>`` to a registered version.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import tempfile
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
from mlcycle.core import integrity
from mlcycle.core.data import Schema
from mlcycle.errors import MlcycleError, first_line
from mlcycle.tracking import flavor
from mlcycle.tracking.flavor import TRUSTED_TYPES, load_skops, untrusted_types

log = logging.getLogger(__name__)

MODEL_NAME_IN_RUN = "model"
MODEL_URI_TAG = "mlcycle.model_uri"  # on the register stage's run: the logged model's URI
MANIFEST_TAG = "mlcycle.manifest"  # on a registered version: sha256 of every file of the model
REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")

class ModelLoadError(MlcycleError):
    """A model cannot be loaded safely (not skops, untrusted types, missing artifact)."""


class ModelIntegrityError(ModelLoadError):
    """A registered model's files differ from the manifest recorded when it was registered."""


def pip_requirements() -> list[str]:
    """Exact versions of what loading the model needs. Explicit: inference costs seconds."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


# --------------------------------------------------------------------------- logging a model
def signature_for(outputs) -> mlflow.models.ModelSignature:
    """The model's outputs and ``params.output`` (labels | probabilities); no input schema.

    The inputs are the model's own contract (``flavor.contract_of``: every column by name
    with the type it had in the training data), checked by the model on every call. MLflow's
    column types cannot take real rows: an int64 column is refused for a double, a missing
    value for a long; its CSV parser cannot read a datetime column; text dates are refused
    for a datetime under pandas 3 (docs/architecture.md has the details).
    """
    from mlflow.models import infer_signature
    from mlflow.types import DataType, ParamSchema, ParamSpec

    from mlcycle.tracking.flavor import LABELS, OUTPUT_PARAM

    params = ParamSchema([ParamSpec(OUTPUT_PARAM, DataType.string, LABELS)])
    return mlflow.models.ModelSignature(inputs=None, outputs=infer_signature(outputs).inputs, params=params)


def log_model(model, example, schema: Schema) -> mlflow.models.model.ModelInfo:
    """Log the fitted Pipeline on the active run as an mlcycle model (``flavor.save_model``:
    skops, no pickle, plus the input contract), with a signature, an input example, explicit
    requirements and mlcycle's code (``code_paths``)."""
    from mlflow.models import Model

    unknown = [t for t in untrusted_types(model) if t not in TRUSTED_TYPES]
    if unknown:
        raise ValueError(f"model holds types not in flavor.TRUSTED_TYPES: {unknown}")
    with warnings.catch_warnings():
        # the output is class labels or numbers, never missing: MLflow's hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return Model.log(
            artifact_path=None,
            name=MODEL_NAME_IN_RUN,
            flavor=flavor,
            pipeline=model,
            contract=flavor.contract_of(schema),
            code_paths=[str(Path(mlcycle.__file__).parent)],
            signature=signature_for(model.predict(example)),
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata={"task": schema.task.value, "target": schema.target, "classes": [str(c) for c in schema.classes],
                      "inputs": {c: schema.type_of(c) for c in schema.features}, "mlcycle_version": mlcycle.__version__},
        )


def manifest(model_uri: str) -> str:
    """The manifest (``core.integrity``) of a logged model's files, as stored: downloaded, so
    what is hashed is what a loader will get."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-manifest-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return integrity.to_text(integrity.manifest_of(local))


# --------------------------------------------------------------------------- loading safely
@dataclass(frozen=True)
class LoadedModel:
    model: object  # the sklearn Pipeline
    uri: str
    task: Task | None
    target: str | None
    inputs: list[tuple[str, str, bool]]  # (column, type, required): the contract (older models: the signature)
    name: str | None = None  # registered model name and version, when the URI names one
    version: str | None = None

    @property
    def classes(self) -> tuple:
        return tuple(getattr(self.model, "classes_", ()))

    @property
    def probabilities(self) -> bool:
        """A classifier that gives probabilities: batch scoring writes ``probability_<class>``."""
        return self.task is not Task.regression and hasattr(self.model, "predict_proba")


def load_model(uri: str) -> LoadedModel:
    """Download a model into a temporary folder (nothing is written beside the artifacts),
    verify it against the manifest its registered version carries (before reading any of
    its files), and load it through skops with mlcycle's own allowlist.

    Refuses: files that differ from the manifest, pickle/cloudpickle models, and models whose
    MLmodel declares trusted types beyond ``TRUSTED_TYPES`` (that list is part of the
    artifact, so it proves nothing by itself).
    """
    return load_model_payload(uri)[0]


def load_model_payload(uri: str) -> tuple[LoadedModel, bytes]:
    """``load_model``, plus the verified skops bytes it was loaded from: what a Spark job
    ships to its executors, which rebuild the Pipeline with ``flavor.load_skops`` (the same
    allowlist) and never download the model themselves."""
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="mlcycle-model-") as tmp:
        local, version = fetch(uri, Path(tmp))
        try:
            meta = Model.load(local)
        except (MlflowException, OSError) as exc:
            raise ModelLoadError(f"cannot load model {uri}: {first_line(exc)}") from None
        payload, contract = _read(local, meta, uri)
    try:
        model = load_skops(payload)
    except Exception as exc:  # skops' UntrustedTypesFoundException, a corrupt file, ...
        raise ModelLoadError(f"cannot load model {uri} with skops: {first_line(exc)}") from None
    md = meta.metadata or {}
    if contract is not None:
        inputs = [(c["name"], c["type"], True) for c in contract["inputs"]]
    elif meta.signature is not None and meta.signature.inputs.has_input_names():
        inputs = [(c.name, _type_name(c.type), bool(c.required)) for c in meta.signature.inputs.inputs]
    else:
        inputs = []
    task = Task(md["task"]) if md.get("task") in Task._value2member_map_ else None
    name, number = (version.name, str(version.version)) if version is not None else _registered(uri)
    return LoadedModel(model, uri, task, md.get("target"), inputs, name, number), payload


def fetch(uri: str, dst: Path) -> tuple[Path, ModelVersion | None]:
    """The model's files, downloaded into ``dst``; for a registered version, verified
    against its manifest (``ModelIntegrityError`` naming each file that differs)."""
    version = _version(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot load model {uri}: {first_line(exc)}") from None
    if version is not None:
        text = version.tags.get(MANIFEST_TAG)
        if text is None:  # registered by an mlcycle that did not record manifests
            log.warning("%s version %s has no integrity manifest; loading it unverified", version.name, version.version)
        elif diffs := integrity.differences(local, integrity.from_text(text)):
            shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
            raise ModelIntegrityError(
                f"{uri}: the model's files differ from the manifest recorded when version {version.version} was "
                f"registered ({shown}); refusing to load it"
            )
    return local, version


def _read(local: Path, meta, uri: str) -> tuple[bytes, dict | None]:
    """The skops payload (and, for mlcycle pyfunc models, the input contract) from a verified folder."""
    pyfunc = meta.flavors.get("python_function", {})
    if pyfunc.get("loader_module") == flavor.__name__:  # never the file's own list of trusted types
        data = local / pyfunc["data"]
        payload, contract = (data / flavor.MODEL_FILE).read_bytes(), json.loads((data / flavor.CONTRACT_FILE).read_text())
    elif (sklearn := meta.flavors.get("sklearn")) is not None:  # models logged before input contracts
        fmt = sklearn.get("serialization_format", "pickle")
        if fmt != "skops":
            raise ModelLoadError(f"model {uri} is serialized with {fmt}; mlcycle loads only skops models (no pickle)")
        extra = sorted(set(sklearn.get("skops_trusted_types") or ()) - set(TRUSTED_TYPES))
        if extra:
            raise ModelLoadError(f"model {uri} asks to trust types mlcycle does not trust: {extra}")
        payload, contract = (local / sklearn["pickled_model"]).read_bytes(), None
    else:
        raise ModelLoadError(f"model {uri} is not an mlcycle model (flavors: {', '.join(meta.flavors)})")
    return payload, contract


def _version(uri: str) -> ModelVersion | None:
    """The registered version a ``models:/<name>/<version>`` or ``@alias`` URI names, else None."""
    try:
        parse_model_uri(uri)
    except ValueError:
        return None
    try:
        return resolve_uri(MlflowClient(), uri)
    except MlcycleError as exc:
        raise ModelLoadError(f"cannot load model {exc}") from None


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
