"""The schema of ``mlcycle monitor`` / ``mlcycle retrain``'s configuration (conf/monitor.yaml):
which model to watch, the batch, the thresholds, and what a verdict triggers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mlcycle.config.paths import user_path
from mlcycle.config.rules import (
    KEY_VALUES,
    MODEL_NAME,
    Checked,
    at_least,
    between,
    or_null,
    positive,
)
from mlcycle.config.schema import MlflowConfig, PathsConfig


class RetrainOn(StrEnum):
    never = "never"  # only report
    drift = "drift"  # retrain on a drift or decay verdict
    decay = "decay"  # retrain on a decay verdict only


@dataclass
class BatchConfig(Checked):
    """The new batch to monitor: a file, or the default generator (reference data = generator)."""

    KEY = "batch"

    path: str | None = user_path()  # CSV or Parquet; null = generate with the e-commerce generator
    n_rows: int = 5000  # generator only
    seed: int = 1001  # generator only: a seed the reference data did not use
    drift: float = 0.0  # generator only: 0 = the reference distribution
    labelled: bool = True  # generator only: false drops the target (an unlabelled batch)

    def check(self) -> None:
        self.require(
            self.path is not None or (self.n_rows >= 1 and self.drift >= 0),
            "batch.n_rows must be positive and batch.drift >= 0",
        )


@dataclass
class MonitorConfig(Checked):
    """Which model to watch, when to call drift or decay, and what to do about it."""

    KEY = "monitor"
    RULES = {
        "psi_threshold": positive(), "alpha": between(0, 1, low_open=True, high_open=True),
        "n_bins": at_least(2), "max_categories": at_least(1),
        "max_drifted_share": between(0, 1, low_open=True), "max_prediction_psi": positive(),
        "max_metric_drop": or_null(at_least(0)), "max_relative_drop": or_null(at_least(0)),
        "retrain_overrides": KEY_VALUES, "retrain_reference_fraction": between(0, 1),
        "model_name": MODEL_NAME,
    }

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
    result_file: str | None = user_path()  # JSON {run_id, verdict, exit_code, ...} for orchestrators


@dataclass
class MonitorAppConfig:
    """The ``mlcycle monitor`` / ``mlcycle retrain`` configuration (conf/monitor.yaml)."""

    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
