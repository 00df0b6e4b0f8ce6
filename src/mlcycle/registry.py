"""The model registry: log the model once, register it, move aliases.

Models are saved with skops, not pickle: loading only rebuilds the types listed in
``TRUSTED_TYPES`` (an explicit allowlist), so a tampered model file cannot run code.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlcycle
from mlcycle.data import Schema

# Types (beyond skops' defaults) that a model Pipeline may contain. Adding an estimator or a
# transformer with new internals means adding its types here, on purpose.
TRUSTED_TYPES = sorted(
    {
        "mlcycle.cleaning.TabularCleaner",
        "mlcycle.features.DateParts",
        "mlcycle.features.DerivedFeatures",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.model_selection._split.KFold",  # TargetEncoder's cross-fitting splitter
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.tree._tree.Tree",
    }
)

MODEL_NAME_IN_RUN = "model"
REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")


def pip_requirements() -> list[str]:
    """Exact versions of what loading the model needs. Explicit: inference costs seconds."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def untrusted_types(model) -> list[str]:
    """Types skops would refuse to load from this model without being told to trust them."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def log_model(model, example, schema: Schema) -> mlflow.models.model.ModelInfo:
    """Log the fitted Pipeline on the active run: signature, example, skops, mlcycle code."""
    from mlflow.models import infer_signature

    unknown = [t for t in untrusted_types(model) if t not in TRUSTED_TYPES]
    if unknown:
        raise ValueError(f"model holds types not in registry.TRUSTED_TYPES: {unknown}")
    with warnings.catch_warnings():
        # the output is integer class labels, never missing: MLflow's hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, model.predict(example))
        return mlflow.sklearn.log_model(
            model,
            name=MODEL_NAME_IN_RUN,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
            code_paths=[str(Path(mlcycle.__file__).parent)],
            metadata={"task": schema.task.value, "target": schema.target, "classes": [str(c) for c in schema.classes]},
        )


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]


def register(model_uri: str, name: str, tags: dict[str, str], *, challenger: str, champion: str) -> Registration:
    """Register a version, alias it ``challenger``, and ``champion`` when there is none yet."""
    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, challenger, version.version)
    aliases = [challenger]
    if alias_version(client, name, champion) is None:
        client.set_registered_model_alias(name, champion, version.version)
        aliases.append(champion)
    return Registration(name, str(version.version), tuple(aliases))


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
