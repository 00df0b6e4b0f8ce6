"""The model registry: log the model once, register it, move aliases through the gate.

* Models are saved with skops, not pickle. mlcycle loads them (``load_model``) only through
  skops with its own allowlist ``TRUSTED_TYPES``, never the list written in the model's
  MLmodel file, and refuses pickle/cloudpickle models outright.
* Every alias move (``move_alias``) happens under the registry lock (``locks.py``), re-reads
  the alias after setting it, and leaves an audit entry on the registered model.
* ``promote`` is the compare-and-set: under the lock, read the champion, re-score it on the
  candidate's test set, run the gate (``gate.py``), and move ``champion`` only if it passes.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib.metadata
import json
import os
import secrets
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlcycle
from mlcycle import gate as gate_mod
from mlcycle.config import ChampionError, GateConfig, LockConfig, Task
from mlcycle.data import Schema
from mlcycle.errors import MlcycleError

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

# Tags mlcycle writes. On a version: the gate's verdict and numbers, and (on a champion) the
# version it replaced. On the registered model: one audit entry per alias move.
TAG_GATE = "mlcycle.gate"  # passed | failed | forced | disabled
TAG_GATE_SUMMARY = "mlcycle.gate.summary"  # one line: the numbers or the reasons
TAG_GATE_REPORT = "mlcycle.gate.report"  # JSON: every check with its numbers
TAG_PREVIOUS_CHAMPION = "mlcycle.previous_champion"
TAG_TEST_DATA = "test_data_uri"  # the candidate's test split (Parquet with the target)
TAG_PRIMARY_METRIC = "primary_metric"
AUDIT_PREFIX = "mlcycle.audit."


class RegistryError(MlcycleError):
    """A registry operation cannot be done as asked (unknown version, no champion, ...)."""


class ModelLoadError(MlcycleError):
    """A model cannot be loaded safely (not skops, untrusted types, missing artifact)."""


class RegistryConflict(RegistryError):
    """An alias did not hold the value just written: another writer bypassed the lock."""


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
        raise ValueError(f"model holds types not in registry.TRUSTED_TYPES: {unknown}")
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
    import skops.io
    from mlflow.models import Model

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        meta = Model.load(local)
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot load model {uri}: {_first_line(exc)}") from None
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
        model = skops.io.load(Path(local) / flavor["pickled_model"], trusted=TRUSTED_TYPES)
    except Exception as exc:  # skops' UntrustedTypesFoundException, a corrupt file, ...
        raise ModelLoadError(f"cannot load model {uri} with skops: {_first_line(exc)}") from None
    md = meta.metadata or {}
    inputs = []
    if meta.signature is not None and meta.signature.inputs.has_input_names():
        inputs = [(c.name, _type_name(c.type), bool(c.required)) for c in meta.signature.inputs.inputs]
    task = Task(md["task"]) if md.get("task") in Task._value2member_map_ else None
    name, version = _registered(uri)
    return LoadedModel(model, uri, task, md.get("target"), inputs, name, version)


def _type_name(t) -> str:
    return getattr(t, "name", str(t))


def _registered(uri: str) -> tuple[str | None, str | None]:
    """(name, version) for ``models:/<name>/<version>`` and ``models:/<name>@<alias>``."""
    if not uri.startswith("models:/"):
        return None, None
    rest = uri.removeprefix("models:/")
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
        name, _, version = rest.partition("/")
        return (name, version) if version.isdigit() else (None, None)
    except MlflowException:
        return None, None


def score(loaded: LoadedModel, frame: pd.DataFrame, target: str) -> dict[str, float]:
    """All metrics of a loaded model on a labelled frame (raises on incompatible data)."""
    from mlcycle.evaluation import compute_metrics, predict_all

    task = loaded.task or Task.regression
    X, y = frame.drop(columns=[target]), frame[target]
    y_pred, proba = predict_all(loaded.model, X, task)
    return compute_metrics(task, y, y_pred, proba, loaded.classes)


# --------------------------------------------------------------------------- audit trail
def current_user() -> str:
    if user := os.environ.get("MLCYCLE_USER"):
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


_clock_lock = threading.Lock()
_last_stamp: list[dt.datetime] = []


def _now() -> dt.datetime:
    """UTC now, strictly increasing within this process (audit keys sort in move order)."""
    with _clock_lock:
        now = dt.datetime.now(dt.UTC)
        if _last_stamp and now <= _last_stamp[0]:
            now = _last_stamp[0] + dt.timedelta(microseconds=1)
        _last_stamp[:] = [now]
        return now


def audit(client: MlflowClient, name: str, entry: dict) -> str:
    """Store one audit entry as a tag on the registered model; returns the tag key.

    Key ``mlcycle.audit.<UTC time>-<random>``: sorts by time, unique without coordination.
    Value: one line of JSON (at, user, action, alias, from, to, reason, gate numbers).
    """
    now = _now()
    record = {"at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"), "user": current_user(), **entry}
    key = f"{AUDIT_PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(2)}"
    client.set_registered_model_tag(name, key, json.dumps(record, default=str))
    return key


def history(client: MlflowClient, name: str) -> list[dict]:
    """Every audit entry of a registered model, oldest first."""
    tags = client.get_registered_model(name).tags
    entries = []
    for key in sorted(k for k in tags if k.startswith(AUDIT_PREFIX)):
        try:
            entries.append(json.loads(tags[key]))
        except json.JSONDecodeError:
            entries.append({"raw": tags[key]})
    return entries


# --------------------------------------------------------------------------- aliases
def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, *, action: str, reason: str,
    gate: dict | None = None, extra: dict | None = None,
) -> dict:
    """Point ``alias`` at ``version``, re-read it, and record the move. Call under the lock."""
    before = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    after = alias_version(client, name, alias)
    if after != str(version):
        raise RegistryConflict(
            f"{name}@{alias} is version {after} right after mlcycle set it to {version}: another "
            "writer moved it without the registry lock"
        )
    entry = {"action": action, "alias": alias, "from": before, "to": str(version), "reason": reason}
    if gate is not None:
        entry["gate"] = gate
    entry.update(extra or {})
    audit(client, name, entry)
    return entry


# --------------------------------------------------------------------------- registration
@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]
    promotion: Promotion | None = None


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    promoted: bool
    verdict: str  # passed | failed | forced | disabled | already-champion
    summary: str
    previous_champion: str | None = None
    decision: gate_mod.Decision | None = None


def register(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Create a new version (no alias yet); returns its version number."""
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return str(version.version)


def gate_policy(cfg: GateConfig, task: Task, primary: str | None = None) -> gate_mod.GatePolicy:
    from mlcycle.evaluation import primary_metric

    return gate_mod.GatePolicy(
        primary_metric=primary or primary_metric(cfg.primary_metric, task),
        min_absolute_change=cfg.min_absolute_change,
        min_relative_change=cfg.min_relative_change,
        thresholds={m: v for m, v in cfg.thresholds.items() if v is not None},
        guards={m: v for m, v in cfg.guard_metrics.items() if v is not None},
    )


@dataclass
class Candidate:
    """What the gate needs about the version to promote."""

    version: str
    task: Task
    metrics: dict[str, float]  # scored on ``test``
    test: pd.DataFrame  # labelled test set the champion is re-scored on
    target: str
    primary_metric: str | None = None
    notes: dict = field(default_factory=dict)


def promote(
    client: MlflowClient, name: str, candidate: Candidate, gate_cfg: GateConfig, lock_cfg: LockConfig, *,
    champion_alias: str, force: bool = False, reason: str | None = None,
) -> Promotion:
    """The compare-and-set: under the lock, gate ``candidate`` against the current champion
    (re-scored on the candidate's test set) and move ``champion`` when it passes (or ``force``)."""
    from mlcycle.evaluation import greater_is_better, metric_names
    from mlcycle.locks import registry_lock

    policy = gate_policy(gate_cfg, candidate.task, candidate.primary_metric)
    with registry_lock(mlflow.get_tracking_uri(), lock_cfg, name):
        for _ in range(3):  # retry if a non-cooperating writer moved the champion meanwhile
            champion = alias_version(client, name, champion_alias)
            if champion == candidate.version:
                return Promotion(name, candidate.version, False, "already-champion",
                                 f"version {candidate.version} is already {champion_alias}", champion)
            champion_metrics, error, ignored = None, None, None
            if champion is not None and not force and gate_cfg.enabled:
                champion_metrics, error = _score_champion(name, champion, candidate)
                if error is not None and gate_cfg.on_champion_error is ChampionError.promote:
                    ignored, error = error, None
            decision = gate_mod.decide(
                policy, candidate.metrics, champion_metrics, greater_is_better=greater_is_better,
                applicable=metric_names(candidate.task), champion_version=champion, champion_error=error,
            )
            if alias_version(client, name, champion_alias) == champion:
                break
        else:
            raise RegistryConflict(f"{name}@{champion_alias} kept moving while mlcycle held the registry lock")

        if force:
            verdict, summary = "forced", f"forced by {current_user()}; gate not applied"
        elif not gate_cfg.enabled:
            verdict, summary = "disabled", "gate disabled (registry.gate.enabled=false)"
        else:
            verdict, summary = ("passed" if decision.passed else "failed"), decision.summary()
        report = {**decision.to_dict(), "verdict": verdict, **candidate.notes}
        if ignored is not None:
            summary = (f"{summary}; champion version {champion} could not be scored ({ignored}) and was "
                       "ignored (registry.gate.on_champion_error=promote)")
            report["champion_error_ignored"] = ignored
        client.set_model_version_tag(name, candidate.version, TAG_GATE, verdict)
        client.set_model_version_tag(name, candidate.version, TAG_GATE_SUMMARY, summary)
        client.set_model_version_tag(name, candidate.version, TAG_GATE_REPORT, json.dumps(report, default=str))
        promoted = verdict in ("passed", "forced", "disabled")
        if promoted:
            text = summary if not reason else f"{reason} ({summary})"
            move_alias(client, name, champion_alias, candidate.version, action="force" if force else "promote",
                       reason=text, gate=report)
            if champion is not None:
                client.set_model_version_tag(name, candidate.version, TAG_PREVIOUS_CHAMPION, champion)
        else:  # not a move, but part of the history: who tried, and the numbers that said no
            audit(client, name, {"action": "rejected", "alias": champion_alias, "from": champion, "to": champion,
                                 "candidate": candidate.version, "reason": summary, "gate": report})
        return Promotion(name, candidate.version, promoted, verdict, summary, champion, decision)


def _score_champion(name: str, version: str, candidate: Candidate) -> tuple[dict | None, str | None]:
    """The champion's metrics on the candidate's test set, or the reason it cannot be scored."""
    try:
        loaded = load_model(f"models:/{name}/{version}")
        if loaded.task is not None and loaded.task is not candidate.task:
            return None, f"it is a {loaded.task.value} model, the candidate is {candidate.task.value}"
        return score(loaded, candidate.test, candidate.target), None
    except Exception as exc:
        return None, _first_line(exc)


def register_and_gate(
    model_uri: str, name: str, tags: dict[str, str], candidate: Candidate, *, challenger: str, champion: str,
    gate_cfg: GateConfig, lock_cfg: LockConfig,
) -> Registration:
    """Register a new version, alias it ``challenger``, then run the gated promotion."""
    from mlcycle.locks import registry_lock

    client = MlflowClient()
    candidate.version = register(model_uri, name, tags)
    with registry_lock(mlflow.get_tracking_uri(), lock_cfg, name):
        move_alias(client, name, challenger, candidate.version, action="register",
                   reason=f"new version from run {tags.get('root_run_id', '?')}")
    promotion = promote(client, name, candidate, gate_cfg, lock_cfg, champion_alias=champion)
    aliases = (challenger, champion) if promotion.promoted else (challenger,)
    return Registration(name, candidate.version, aliases, promotion)


def rollback(client: MlflowClient, name: str, lock_cfg: LockConfig, *, champion_alias: str,
             to_version: str | None = None, reason: str | None = None) -> dict:
    """Move ``champion`` back to the version it replaced (or to ``to_version``)."""
    from mlcycle.locks import registry_lock

    with registry_lock(mlflow.get_tracking_uri(), lock_cfg, name):
        current = alias_version(client, name, champion_alias)
        if current is None and to_version is None:
            raise RegistryError(f"{name} has no {champion_alias} to roll back")
        target = to_version
        if target is None:
            target = client.get_model_version(name, current).tags.get(TAG_PREVIOUS_CHAMPION)
            if not target:
                raise RegistryError(
                    f"{name} version {current} has no previous {champion_alias} recorded; "
                    "name one with --to VERSION"
                )
        try:
            client.get_model_version(name, target)
        except MlflowException:
            raise RegistryError(f"{name} has no version {target}") from None
        if target == current:
            raise RegistryError(f"version {target} is already {champion_alias} of {name}")
        text = reason or f"rollback from version {current}"
        return move_alias(client, name, champion_alias, target, action="rollback", reason=text)


def resolve_version(client: MlflowClient, name: str, ref: str) -> str:
    """A version number or an alias name -> the version number."""
    if ref.isdigit():
        try:
            return str(client.get_model_version(name, ref).version)
        except MlflowException:
            raise RegistryError(f"registered model {name!r} has no version {ref}") from None
    version = alias_version(client, name, ref)
    if version is None:
        raise RegistryError(f"registered model {name!r} has no alias {ref!r}")
    return version


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
