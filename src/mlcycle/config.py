"""Typed configuration: one dataclass schema per config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` fill these schemas. Because every field is typed, Hydra rejects
an unknown key or a wrong type (``tune.n_trials=abc``) while composing, before any MLflow run
exists. ``validate`` adds the checks a type cannot express (fractions that sum to one, ...).

Nothing here runs at import: call ``register_configs()`` before composing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from mlcycle.errors import ConfigError
from mlcycle.masking import mask_uri

STAGES = ("ingest", "preprocess", "features", "tune", "train", "evaluate", "register")


class Task(str, Enum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class Source(str, Enum):
    generator = "generator"  # mlcycle.datasets.ecommerce
    file = "file"  # CSV or Parquet at data.path
    sklearn = "sklearn"  # a dataset bundled with scikit-learn


class Clip(str, Enum):
    iqr = "iqr"
    quantile = "quantile"
    none = "none"


@dataclass
class PathsConfig:
    root: str = "${mlcycle_root:}"  # project root, absolute (see project_root())
    data_dir: str = "${paths.root}/data"


@dataclass
class SplitConfig:
    train: float = 0.6
    validation: float = 0.2
    test: float = 0.2


@dataclass
class DataConfig:
    name: str = "???"
    source: Source = Source.generator
    path: str | None = None  # file source: CSV or Parquet
    target: str = "???"
    task: Task | None = None  # inferred from the target when null
    time_column: str | None = None  # time-ordered split when set
    drop_columns: list[str] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)  # numeric|categorical|datetime
    n_rows: int = 20_000  # generator only
    seed: int = "${seed}"  # type: ignore[assignment]
    drift: float = 0.0  # generator only: 0 = reference distribution
    min_rows: int = 50
    numeric_garbage_tolerance: float = 0.01  # share of non-numeric cells a numeric column may hold
    split: SplitConfig = field(default_factory=SplitConfig)
    # Domain features: new column name -> pandas expression over raw columns.
    derived_features: dict[str, str] = field(default_factory=dict)


@dataclass
class PreprocessConfig:
    drop_duplicates: bool = True
    impute_numeric: str = "median"  # median | mean
    clip: Clip = Clip.iqr
    iqr_factor: float = 3.0
    quantile_low: float = 0.005
    quantile_high: float = 0.995
    drop_anomalies: bool = True
    anomaly_contamination: float = 0.005


@dataclass
class FeaturesConfig:
    scale_numeric: bool = True
    max_onehot_cardinality: int = 12  # above this, categoricals get the high-cardinality encoder
    high_cardinality_encoder: str = "target"  # target | ordinal
    date_parts: list[str] = field(default_factory=lambda: ["month", "dayofweek", "hour"])


@dataclass
class EstimatorSpec:
    estimator: str = "???"  # import path of a scikit-learn estimator class
    params: dict[str, Any] = field(default_factory=dict)
    # name -> {type: float|int|categorical, low, high, log, choices}
    search_space: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = "???"
    classifier: EstimatorSpec = field(default_factory=EstimatorSpec)
    regressor: EstimatorSpec = field(default_factory=EstimatorSpec)


SAMPLERS = ("tpe", "random", "cmaes", "qmc")
PRUNERS = ("none", "median", "successive_halving", "hyperband")


class Parallel(Enum):
    thread = "thread"  # n_jobs threads in this process
    process = "process"  # n_jobs processes (this one + n_jobs - 1 spawned workers)


class TrialWriterKind(Enum):
    auto = "auto"  # process for a tracking server (on Linux), thread for a local store
    thread = "thread"  # a background thread in the tuning process
    process = "process"  # a forked process: its HTTP work never holds the trials' GIL


@dataclass
class TuneConfig:
    n_trials: int = 20  # target for the whole study: finished trials of earlier attempts count
    timeout: float | None = None  # seconds; stops starting new trials after it
    cv_folds: int = 3
    sampler: str = "tpe"  # one of SAMPLERS
    seed: int = "${seed}"  # type: ignore[assignment]
    pruner: str = "none"  # one of PRUNERS; fed by the mean score over the folds so far
    pruner_startup_trials: int = 5  # trials that finish before any is pruned
    n_jobs: int = 1  # trials in parallel in this invocation
    parallel: Parallel = Parallel.process
    blas_threads: int | None = 1  # BLAS threads per trial; null: the library default
    trial_writer: TrialWriterKind = TrialWriterKind.auto  # who writes the trial runs
    # Optuna storage: null = in memory; sqlite:///file.db (one process, resumable);
    # journal:///file.log (processes on one machine); postgresql+psycopg2://... (many machines)
    storage: str | None = None
    study_name: str | None = None  # null: <experiment>-<model>-<hash of the search definition>
    heartbeat_interval: int = 10  # seconds, RDB storages: a trial silent for grace_period is FAIL
    grace_period: int = 30
    max_retry: int = 2  # times a trial whose worker died is run again
    progress_bar: bool = True  # drawn only when stderr is a terminal
    plots: bool = True  # optimization history and parameter importances on the tune run


@dataclass
class EvaluateConfig:
    # Metric optimised by tune and compared by the registry. "auto": roc_auc for
    # classification, rmse for regression.
    primary_metric: str = "auto"
    plots: bool = True


class ChampionError(StrEnum):
    fail = "fail"  # the gate fails with the reason; the champion stays
    promote = "promote"  # treat it as if there were no champion (thresholds still apply)


class LockBackend(StrEnum):
    auto = "auto"  # sqlite -> file lock beside the store; postgresql -> advisory lock; else file
    file = "file"
    postgres = "postgres"
    none = "none"  # no serialization: only for a single writer


@dataclass
class GateConfig:
    enabled: bool = True  # false: every new version becomes champion (still audited)
    primary_metric: str = "${evaluate.primary_metric}"  # auto: roc_auc / rmse
    min_absolute_change: float = 0.0
    min_relative_change: float = 0.0
    # metric -> bound / tolerance; null switches an entry off (Hydra merges dicts, so
    # `registry.gate.guard_metrics.log_loss=null` is how to drop a default guard)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    guard_metrics: dict[str, float | None] = field(default_factory=dict)
    on_champion_error: ChampionError = ChampionError.fail


@dataclass
class LockConfig:
    backend: LockBackend = LockBackend.auto
    path: str | None = None  # file lock path; null: beside a sqlite store, else under paths.root
    postgres_uri: str | None = None  # advisory-lock database when the store is an HTTP server
    timeout: float = 600.0  # seconds to wait for the lock


@dataclass
class RegistryConfig:
    enabled: bool = True
    model_name: str = "mlcycle-${data.name}"
    challenger_alias: str = "challenger"
    champion_alias: str = "champion"
    gate: GateConfig = field(default_factory=GateConfig)
    lock: LockConfig = field(default_factory=LockConfig)


@dataclass
class ReportConfig:
    enabled: bool = True  # report.html on the root run at the end of every pipeline run


@dataclass
class MlflowConfig:
    # MLFLOW_TRACKING_URI, when set, wins over this value (see remote.resolve_tracking_uri).
    tracking_uri: str = "sqlite:///${paths.root}/mlflow.db"
    artifact_location: str = "${paths.root}/mlartifacts"
    experiment_name: str = "mlcycle"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Seconds the start-up check waits for a remote tracking server or database (no retries),
    # so an unreachable store fails the run at once instead of after MLflow's minutes of retries.
    connect_timeout: float = 5.0


@dataclass
class CacheConfig:
    """Step caching (caching.py): reuse a stage's outputs from an earlier run with the same
    fingerprint. ``mlcycle train cache=false`` is shorthand for ``cache.enabled=false``."""

    enabled: bool = True  # false: run every stage (outputs and fingerprints are still recorded)
    force: list[str] = field(default_factory=list)  # rerun these stages and everything after them
    allow_dirty: bool = False  # cache even when the git tree is dirty or the commit is unknown


@dataclass
class Config:
    seed: int = 42
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)


# --------------------------------------------------------------------------- monitor
class RetrainOn(str, Enum):
    never = "never"  # only report
    drift = "drift"  # retrain on a drift or decay verdict
    decay = "decay"  # retrain on a decay verdict only


@dataclass
class BatchConfig:
    """The new batch to monitor: a file, or the default generator (reference data = generator)."""

    path: str | None = None  # CSV or Parquet; null = generate with the e-commerce generator
    n_rows: int = 5000  # generator only
    seed: int = 1001  # generator only: a seed the reference data did not use
    drift: float = 0.0  # generator only: 0 = the reference distribution
    labelled: bool = True  # generator only: false drops the target (an unlabelled batch)


@dataclass
class MonitorConfig:
    """Which model to watch, when to call drift or decay, and what to do about it."""

    model_name: str = "mlcycle-ecommerce"
    model_alias: str = "champion"
    model_version: str | None = None  # a version number wins over the alias
    psi_threshold: float = 0.2
    alpha: float = 0.01
    n_bins: int = 10
    max_categories: int = 50
    max_drifted_share: float = 0.25
    max_prediction_psi: float = 0.2
    decay_metric: str = "auto"  # auto: the model's primary metric (roc_auc / rmse)
    max_metric_drop: float | None = 0.05  # absolute; not for rmse/mae/log_loss
    max_relative_drop: float | None = 0.1  # share of the registered value
    min_labelled_rows: int = 100
    ignore_columns: list[str] = field(default_factory=list)
    retrain_on: RetrainOn = RetrainOn.decay
    retrain_overrides: list[str] = field(default_factory=list)
    retrain_reference_fraction: float = 1.0  # share of the reference rows kept (random, seeded)
    exit_codes: bool = True  # false: exit 0 whatever the verdict (mlflow run)
    report: bool = True
    result_file: str | None = None  # JSON {run_id, verdict, exit_code, ...} for orchestrators


@dataclass
class MonitorAppConfig:
    """The ``mlcycle monitor`` / ``mlcycle retrain`` configuration (conf/monitor.yaml)."""

    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


def project_root() -> Path:
    """Where the default tracking store and data live, whatever the working directory.

    ``MLCYCLE_ROOT`` wins; otherwise the source checkout this package runs from (it holds
    ``MLproject``); otherwise the working directory.
    """
    if env := os.environ.get("MLCYCLE_ROOT"):
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "MLproject").is_file():
        return checkout
    return Path.cwd().resolve()


def config_dir() -> Path:
    """The ``conf/`` folder of the project."""
    conf = Path(__file__).resolve().parents[2] / "conf"
    if not conf.is_dir():
        raise ConfigError(f"configuration folder not found: {conf}")
    return conf


_registered = False


def register_configs() -> None:
    """Register the schemas and the ``mlcycle_root`` resolver (idempotent)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mlcycle_root", lambda: str(project_root()), replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(name="base_monitor_app", node=MonitorAppConfig)
    cs.store(group="monitor", name="base_monitor", node=MonitorConfig)
    _registered = True


def to_typed(cfg: Any) -> Config:
    """Resolve an OmegaConf config into plain dataclasses (no omegaconf beyond this point)."""
    from omegaconf import OmegaConf

    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, Config)
    validate(typed)
    return typed


def validate(cfg: Config) -> None:
    """Checks a type annotation cannot express. Raises ConfigError with one line."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown} in stages; known: {list(STAGES)}")
    unknown = [s for s in cfg.cache.force if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown} in cache.force; known: {list(STAGES)}")
    split = cfg.data.split
    parts = (split.train, split.validation, split.test)
    if any(p <= 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ConfigError(
            f"data.split fractions must be positive and sum to 1, got "
            f"train={split.train} validation={split.validation} test={split.test}"
        )
    if cfg.data.source is Source.file and not cfg.data.path:
        raise ConfigError("data.path is required for a file data source (data=csv data.path=...)")
    if cfg.tune.n_trials < 1:
        raise ConfigError(f"tune.n_trials must be at least 1, got {cfg.tune.n_trials}")
    if cfg.tune.cv_folds < 2:
        raise ConfigError(f"tune.cv_folds must be at least 2, got {cfg.tune.cv_folds}")
    validate_tune(cfg.tune)
    if cfg.preprocess.impute_numeric not in ("median", "mean"):
        raise ConfigError(
            f"preprocess.impute_numeric must be median or mean, got {cfg.preprocess.impute_numeric!r}"
        )
    if cfg.features.high_cardinality_encoder not in ("target", "ordinal"):
        raise ConfigError(
            "features.high_cardinality_encoder must be target or ordinal, got "
            f"{cfg.features.high_cardinality_encoder!r}"
        )
    _validate_gate(cfg.registry.gate)
    for spec_name in ("classifier", "regressor"):
        spec: EstimatorSpec = getattr(cfg.model, spec_name)
        for pname, space in spec.search_space.items():
            kind = space.get("type") if isinstance(space, dict) else None
            if kind not in ("float", "int", "categorical"):
                raise ConfigError(
                    f"model.{spec_name}.search_space.{pname}: type must be float, int or "
                    f"categorical, got {kind!r}"
                )


def _validate_gate(gate: GateConfig) -> None:
    from mlcycle.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS

    known = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
    named = {
        "registry.gate.primary_metric": [] if gate.primary_metric == "auto" else [gate.primary_metric],
        "registry.gate.thresholds": list(gate.thresholds),
        "registry.gate.guard_metrics": list(gate.guard_metrics),
    }
    for where, metrics in named.items():
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise ConfigError(f"{where}: unknown metric(s) {unknown}; known: {sorted(known)}")
    if gate.min_absolute_change < 0 or gate.min_relative_change < 0:
        raise ConfigError("registry.gate.min_absolute_change and min_relative_change must be >= 0")
    negative = {m: t for m, t in gate.guard_metrics.items() if t is not None and t < 0}
    if negative:
        raise ConfigError(f"registry.gate.guard_metrics: tolerances must be >= 0, got {negative}")


def from_resolved(resolved: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A typed Config from a resolved config dict (a run's ``config.yaml``), with optional
    ``key=value`` overrides on top (e.g. a retrain's).

    Keys this version of mlcycle does not know, or values of the wrong type, raise
    ConfigError; keys the dict lacks (added since) take their defaults.
    """
    from omegaconf import OmegaConf

    register_configs()
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(Config), OmegaConf.create(resolved), OmegaConf.from_dotlist(list(overrides or []))
        )
        typed = OmegaConf.to_object(merged)
    except Exception as exc:  # omegaconf validation errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config does not fit this version of mlcycle: {first}") from None
    assert isinstance(typed, Config)
    validate(typed)
    return typed


# Optuna storages mlcycle accepts (tuning.open_storage opens them).
STORAGE_SCHEMES = ("sqlite:///", "journal:///", "postgresql", "mysql")


def validate_tune(tune: TuneConfig) -> None:
    """The tune group's checks, also used by ``mlcycle tune-worker``."""
    if tune.sampler not in SAMPLERS:
        raise ConfigError(f"tune.sampler must be one of {list(SAMPLERS)}, got {tune.sampler!r}")
    if tune.pruner not in PRUNERS:
        raise ConfigError(f"tune.pruner must be one of {list(PRUNERS)}, got {tune.pruner!r}")
    if tune.n_jobs < 1:
        raise ConfigError(f"tune.n_jobs must be at least 1, got {tune.n_jobs}")
    if tune.blas_threads is not None and tune.blas_threads < 1:
        raise ConfigError(f"tune.blas_threads must be at least 1 or null, got {tune.blas_threads}")
    if tune.timeout is not None and tune.timeout <= 0:
        raise ConfigError(f"tune.timeout must be positive seconds or null, got {tune.timeout}")
    if tune.heartbeat_interval < 1 or tune.grace_period <= tune.heartbeat_interval:
        raise ConfigError(
            "tune.heartbeat_interval must be >= 1 and tune.grace_period larger than it, got "
            f"{tune.heartbeat_interval} and {tune.grace_period}"
        )
    if tune.max_retry < 0:
        raise ConfigError(f"tune.max_retry must be >= 0, got {tune.max_retry}")
    storage = tune.storage or ""
    if storage and not storage.startswith(STORAGE_SCHEMES):
        raise ConfigError(
            f"tune.storage {mask_uri(storage)!r}: use sqlite:///file.db, journal:///file.log or a "
            "PostgreSQL/MySQL URL (postgresql+psycopg2://user@host/db)"
        )
    if storage.startswith("sqlite:") and tune.n_jobs > 1 and tune.parallel is Parallel.process:
        raise ConfigError(
            f"tune.storage {storage!r} is sqlite, which several processes must not share "
            f"(tune.n_jobs={tune.n_jobs} with tune.parallel=process); use tune.parallel=thread, "
            "a journal file (tune.storage=journal:///path/study.log) or PostgreSQL"
        )


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a typed config into ``{"a.b.c": "value"}`` for MLflow params."""
    from dataclasses import fields, is_dataclass

    out: dict[str, str] = {}
    if is_dataclass(obj):
        items = [(f.name, getattr(obj, f.name)) for f in fields(obj)]
    elif isinstance(obj, dict):
        items = list(obj.items())
    else:
        return {prefix: _param_value(obj)}
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if is_dataclass(value) or (isinstance(value, dict) and value):
            out.update(flatten(value, name))
        else:
            out[name] = _param_value(value)
    return out


def _param_value(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def as_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain Python containers (for YAML artifacts and fingerprints)."""
    from dataclasses import asdict

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return convert(asdict(cfg))


def to_typed_monitor(cfg: Any) -> MonitorAppConfig:
    """Resolve the monitor command's OmegaConf config into dataclasses and check it."""
    from omegaconf import OmegaConf

    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, MonitorAppConfig)
    validate_monitor(typed)
    return typed


def validate_monitor(cfg: MonitorAppConfig) -> None:
    m = cfg.monitor
    if not 0 < m.alpha < 1:
        raise ConfigError(f"monitor.alpha must be between 0 and 1, got {m.alpha}")
    if not 0 < m.max_drifted_share <= 1:
        raise ConfigError(f"monitor.max_drifted_share must be in (0, 1], got {m.max_drifted_share}")
    if m.n_bins < 2:
        raise ConfigError(f"monitor.n_bins must be at least 2, got {m.n_bins}")
    if m.max_categories < 1:
        raise ConfigError(f"monitor.max_categories must be at least 1, got {m.max_categories}")
    if m.psi_threshold <= 0 or m.max_prediction_psi <= 0:
        raise ConfigError("monitor.psi_threshold and monitor.max_prediction_psi must be positive")
    for key in ("max_metric_drop", "max_relative_drop"):
        if (value := getattr(m, key)) is not None and value < 0:
            raise ConfigError(f"monitor.{key} must be >= 0 or null, got {value}")
    if cfg.batch.path is None and (cfg.batch.n_rows < 1 or cfg.batch.drift < 0):
        raise ConfigError("batch.n_rows must be positive and batch.drift >= 0")
    if not 0 <= m.retrain_reference_fraction <= 1:
        raise ConfigError(f"monitor.retrain_reference_fraction must be in [0, 1], got {m.retrain_reference_fraction}")
    bad = [o for o in m.retrain_overrides if "=" not in o]
    if bad:
        raise ConfigError(f"monitor.retrain_overrides must be key=value items, got {bad}")
