"""The configuration's vocabulary: one dataclass per config group and its Enums.

The YAML files under ``conf/`` fill these schemas (``load.py`` composes them with Hydra).
Types reject an unknown key or a wrong type (``tune.n_trials=abc``) while composing; the
rest is declared next to the fields (``rules.py``): ``RULES`` maps a field to a rule, like
scikit-learn's ``_parameter_constraints``, and ``check`` holds the few rules that involve
several fields. Both run in ``__post_init__``, which OmegaConf calls when it builds the
typed objects, so a bad value fails before any MLflow run exists.

Pure: no hydra, no omegaconf, no mlflow. Every other layer may import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlcycle.config.paths import user_path, user_uri
from mlcycle.config.registry import RegistryConfig
from mlcycle.config.rules import (
    Checked,
    among,
    at_least,
    or_null,
    placeholder,
    positive,
)
from mlcycle.core.masking import mask_uri

# The pipeline's stages, in order: the names `stages` and `cache.force` accept. Each is a
# module under mlcycle/stages/ (adding a stage: that module and one name here).
STAGES = ("ingest", "preprocess", "features", "tune", "train", "evaluate", "register")

# Optuna storages mlcycle accepts (core.tuning.open_storage opens them).
STORAGE_SCHEMES = ("sqlite:///", "journal:///", "postgresql", "mysql")


# --------------------------------------------------------------------------- enums
class Task(StrEnum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class Source(StrEnum):
    generator = "generator"  # mlcycle.core.datasets.ecommerce
    file = "file"  # CSV or Parquet at data.path
    sklearn = "sklearn"  # a dataset bundled with scikit-learn


class Clip(StrEnum):
    iqr = "iqr"
    quantile = "quantile"
    none = "none"


class Impute(StrEnum):
    median = "median"
    mean = "mean"


class Encoder(StrEnum):
    target = "target"
    ordinal = "ordinal"


class Sampler(StrEnum):
    tpe = "tpe"
    random = "random"
    cmaes = "cmaes"
    qmc = "qmc"


class Pruner(StrEnum):
    none = "none"
    median = "median"
    successive_halving = "successive_halving"
    hyperband = "hyperband"


class Fidelity(StrEnum):
    none = "none"  # every trial scores all of each fold's training rows
    subsample = "subsample"  # first 1/9, then 1/3 of them, promoted by the pruner (core/tuning/fidelity.py)


class Parallel(StrEnum):
    thread = "thread"  # n_jobs threads in this process
    process = "process"  # n_jobs processes (this one + n_jobs - 1 spawned workers)


class TrialWriterKind(StrEnum):
    auto = "auto"  # process for a tracking server (on Linux), thread for a local store
    thread = "thread"  # a background thread in the tuning process
    process = "process"  # a forked process: its HTTP work never holds the trials' GIL


class ThresholdObjective(StrEnum):
    f1 = "f1"  # the threshold with the best F1 of the positive class on the validation rows
    cost = "cost"  # the lowest cost_fp * false positives + cost_fn * false negatives
    none = "none"  # the estimator's own rule (0.5 for probabilities)


# --------------------------------------------------------------------------- pipeline groups
@dataclass
class PathsConfig:
    root: str = "${mlcycle_root:}"  # project root, absolute (see load.project_root())
    data_dir: str = "${paths.root}/data"


@dataclass
class SplitConfig(Checked):
    KEY = "data.split"

    train: float = 0.6
    validation: float = 0.2
    test: float = 0.2

    def check(self) -> None:
        parts = (self.train, self.validation, self.test)
        self.require(
            all(p > 0 for p in parts) and abs(sum(parts) - 1.0) <= 1e-6,
            f"data.split fractions must be positive and sum to 1, got "
            f"train={self.train} validation={self.validation} test={self.test}",
        )


@dataclass
class DataConfig(Checked):
    KEY = "data"

    name: str = "???"
    source: Source = Source.generator
    path: str | None = user_path()  # file source: CSV or Parquet (relative: to the start directory)
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

    def check(self) -> None:
        self.require(
            self.source is not Source.file or bool(self.path),
            "data.path is required for a file data source (data=csv data.path=...)",
        )


@dataclass
class PreprocessConfig:

    drop_duplicates: bool = True
    impute_numeric: Impute = Impute.median
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
    high_cardinality_encoder: Encoder = Encoder.target
    date_parts: list[str] = field(default_factory=lambda: ["month", "dayofweek", "hour"])


SPACE_TYPES = ("float", "int", "categorical")


@dataclass
class EstimatorSpec:
    estimator: str = ""  # import path of a scikit-learn estimator class (required but in model=auto)
    params: dict[str, Any] = field(default_factory=dict)
    # name -> {type: float|int|categorical, low, high, log, choices}
    search_space: dict[str, Any] = field(default_factory=dict)
    # name -> value: a known-cheap, known-good point of the search space that a search over
    # several families tries first for this family (tune.cheap_start); a subset of search_space
    start: dict[str, Any] = field(default_factory=dict)


@dataclass
class ThresholdConfig(Checked):
    """The decision threshold of a binary classifier (core/threshold.py): chosen on the
    validation rows for ``objective``, carried inside the registered Pipeline."""

    KEY = "model.threshold"
    RULES = {"cost_fp": positive(), "cost_fn": positive()}

    objective: ThresholdObjective = ThresholdObjective.f1
    cost_fp: float = 1.0  # objective=cost: what one false positive costs ...
    cost_fn: float = 1.0  # ... and one false negative (only their ratio matters)


@dataclass
class EnsembleConfig(Checked):
    """``model=auto``: after the study, a soft vote of the best configuration of each family,
    chosen by greedy ensemble selection on out-of-fold predictions (core/tuning/ensemble.py),
    kept only when its CV score beats the best single configuration's."""

    KEY = "model.ensemble"
    RULES = {"rounds": at_least(1)}

    enabled: bool = False
    rounds: int = 10  # greedy selection rounds (with replacement: a member's weight is its count)


SEARCH_OVER_FAMILIES = ("model=auto, the default, searches several families: set a family's parameters under "
                        "model.families.<family>.classifier..., or choose one family: model=hist_gradient_boosting")


@dataclass
class ModelConfig(Checked):
    """One estimator family (``conf/model/<family>.yaml``: an estimator per task, its fixed
    params and search space), or, with ``families``, a search over several (``model=auto``:
    the tune stage's study picks the family first, then that family's parameters)."""

    KEY = "model"

    name: str = "???"
    classifier: EstimatorSpec = field(default_factory=EstimatorSpec)
    regressor: EstimatorSpec = field(default_factory=EstimatorSpec)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)  # model=auto only
    # model=auto: family name -> that family's config (conf/model/auto.yaml includes the
    # family files); their own threshold is not used, model.threshold is
    families: dict[str, ModelConfig] = field(default_factory=dict)

    def check(self) -> None:
        if placeholder(self.name):  # the schema's own default instance
            return
        estimators = [bool(getattr(self, role).estimator) for role in ("classifier", "regressor")]
        if self.families:
            self.require(
                not any(estimators),
                f"model {self.name!r}: either model.families (a search over families) or "
                "model.classifier/regressor.estimator, not both",
            )
            stray = [f"model.{role}.{part}" for role in ("classifier", "regressor")
                     for part in ("params", "search_space", "start") if getattr(getattr(self, role), part)]
            self.require(not stray, f"{(stray or [''])[0]} is not used ({SEARCH_OVER_FAMILIES})")
            nested = [name for name, family in self.families.items() if family.families]
            self.require(not nested, f"model.families.{(nested or [''])[0]}: a family cannot hold families")
            return
        self.require(all(estimators), f"model {self.name!r}: model.classifier.estimator and "
                                      "model.regressor.estimator are required (a scikit-learn estimator's import path)")
        for role in ("classifier", "regressor"):
            for pname, space in getattr(self, role).search_space.items():
                kind = space.get("type") if isinstance(space, dict) else None
                self.require(
                    kind in SPACE_TYPES,
                    f"model.{role}.search_space.{pname}: type must be float, int or categorical, got {kind!r}",
                )


@dataclass
class TuneConfig(Checked):
    KEY = "tune"
    RULES = {
        "n_trials": at_least(1), "timeout": or_null(positive()), "cv_folds": at_least(2),
        "n_jobs": or_null(at_least(1)), "blas_threads": or_null(at_least(1)),
        "heartbeat_interval": at_least(1), "max_retry": at_least(0),
    }

    n_trials: int = 20  # target for the whole study: finished trials of earlier attempts count
    timeout: float | None = None  # seconds; stops starting new trials after it
    cv_folds: int = 3
    sampler: Sampler = Sampler.tpe
    seed: int = "${seed}"  # type: ignore[assignment]
    pruner: Pruner = Pruner.none  # fed by the mean score over the folds so far
    pruner_startup_trials: int = 5  # trials that finish before any is pruned
    # subsample: each trial first fits on 1/9, then 1/3 of each fold's training rows, reporting
    # each rung to the pruner (successive_halving/hyperband promote the best); needs a pruner
    fidelity: Fidelity = Fidelity.none
    cheap_start: bool = True  # several families: each family's first trial at its model's `start`
    n_jobs: int | None = None  # trials in parallel in this invocation; null: auto (core/tuning/optimize.py)
    parallel: Parallel = Parallel.process
    blas_threads: int | None = 1  # BLAS threads per trial; null: the library default
    trial_writer: TrialWriterKind = TrialWriterKind.auto  # who writes the trial runs
    # Optuna storage: null = in memory; sqlite:///file.db (one process, resumable);
    # journal:///file.log (processes on one machine); postgresql+psycopg2://... (many machines)
    storage: str | None = user_uri()
    study_name: str | None = None  # null: <experiment>-<model>-<hash of the search definition>
    heartbeat_interval: int = 10  # seconds, RDB storages: a trial silent for grace_period is FAIL
    grace_period: int = 30
    max_retry: int = 2  # times a trial whose worker died is run again
    progress_bar: bool = True  # drawn only when stderr is a terminal
    plots: bool = True  # optimization history and parameter importances on the tune run

    def check(self) -> None:
        self.require(
            self.fidelity is Fidelity.none or self.pruner is not Pruner.none,
            "tune.fidelity=subsample reports low-fidelity scores for a pruner to act on: set "
            "tune.pruner=successive_halving (or hyperband, median)",
        )
        self.require(
            self.grace_period > self.heartbeat_interval,
            "tune.heartbeat_interval must be >= 1 and tune.grace_period larger than it, got "
            f"{self.heartbeat_interval} and {self.grace_period}",
        )
        storage = self.storage or ""
        if placeholder(storage):
            return
        self.require(
            not storage or storage.startswith(STORAGE_SCHEMES),
            f"tune.storage {mask_uri(storage)!r}: use sqlite:///file.db, journal:///file.log or a "
            "PostgreSQL/MySQL URL (postgresql+psycopg2://user@host/db)",
        )
        self.require(
            not (storage.startswith("sqlite:") and (self.n_jobs or 1) > 1 and self.parallel is Parallel.process),
            f"tune.storage {storage!r} is sqlite, which several processes must not share "
            f"(tune.n_jobs={self.n_jobs} with tune.parallel=process); use tune.parallel=thread, "
            "a journal file (tune.storage=journal:///path/study.log) or PostgreSQL",
        )


@dataclass
class EvaluateConfig:

    # Metric optimised by tune and compared by the registry. "auto": roc_auc for
    # classification, rmse for regression.
    primary_metric: str = "auto"
    plots: bool = True


@dataclass
class ReportConfig:
    enabled: bool = True  # report.html on the root run at the end of every pipeline run


@dataclass
class MlflowConfig:

    # MLFLOW_TRACKING_URI, when set, wins over this value (see tracking.remote.resolve_tracking_uri).
    tracking_uri: str = user_uri("sqlite:///${paths.root}/mlflow.db")
    artifact_location: str = user_uri("${paths.root}/mlartifacts")
    experiment_name: str = "mlcycle"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Seconds the start-up check waits for a remote tracking server or database (no retries),
    # so an unreachable store fails the run at once instead of after MLflow's minutes of retries.
    connect_timeout: float = 5.0


@dataclass
class CacheConfig(Checked):
    """Step caching (tracking/cache.py): reuse a stage's outputs from an earlier run with the
    same fingerprint. ``mlcycle train cache=false`` is shorthand for ``cache.enabled=false``."""

    KEY = "cache"
    RULES = {"force": among(STAGES, "stage")}

    enabled: bool = True  # false: run every stage (outputs and fingerprints are still recorded)
    force: list[str] = field(default_factory=list)  # rerun these stages and everything after them
    allow_dirty: bool = False  # cache even when the git tree is dirty or the commit is unknown


@dataclass
class Config(Checked):
    RULES = {"stages": among(STAGES, "stage"), "threads_per_fit": or_null(at_least(1))}

    seed: int = 42
    threads_per_fit: int | None = 1  # OpenMP/BLAS threads of each fit and prediction (core/threads.py)
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
