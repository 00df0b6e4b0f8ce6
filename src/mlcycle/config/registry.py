"""The ``registry`` config group: the registered model's name and aliases, the promotion gate
(``registry.gate``) and the registration lock (``registry.lock``). Pure, like ``schema``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mlcycle.config.paths import user_path
from mlcycle.config.rules import ALIAS, METRIC, METRICS, MODEL_NAME, Checked, among, at_least


class ChampionError(StrEnum):
    fail = "fail"  # the gate fails with the reason; the champion stays
    promote = "promote"  # treat it as if there were no champion (thresholds still apply)


class LockBackend(StrEnum):
    auto = "auto"  # sqlite -> file lock beside the store; postgresql -> advisory lock; else file
    file = "file"
    postgres = "postgres"
    none = "none"  # no serialization: only for a single writer


@dataclass
class GateConfig(Checked):
    KEY = "registry.gate"
    RULES = {
        "primary_metric": among(("auto", *METRICS), "metric"),
        "thresholds": METRIC,
        "guard_metrics": METRIC,
        "min_absolute_change": at_least(0),
        "min_relative_change": at_least(0),
    }

    enabled: bool = True  # false: every new version becomes champion (still audited)
    primary_metric: str = "${evaluate.primary_metric}"  # auto: roc_auc / rmse
    min_absolute_change: float = 0.0
    min_relative_change: float = 0.0
    # metric -> bound / tolerance; null switches an entry off (Hydra merges dicts, so
    # `registry.gate.guard_metrics.log_loss=null` is how to drop a default guard)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    guard_metrics: dict[str, float | None] = field(default_factory=dict)
    on_champion_error: ChampionError = ChampionError.fail

    def check(self) -> None:
        negative = {m: t for m, t in self.guard_metrics.items() if t is not None and t < 0}
        self.require(not negative, f"registry.gate.guard_metrics: tolerances must be >= 0, got {negative}")


@dataclass
class LockConfig:

    backend: LockBackend = LockBackend.auto
    path: str | None = user_path()  # file lock path; null: beside a sqlite store, else under paths.root
    postgres_uri: str | None = None  # advisory-lock database when the store is an HTTP server
    timeout: float = 600.0  # seconds to wait for the lock


@dataclass
class RegistryConfig(Checked):
    KEY = "registry"
    # MLflow refuses these names only when registering, after the whole pipeline ran
    RULES = {"model_name": MODEL_NAME, "challenger_alias": ALIAS, "champion_alias": ALIAS}

    enabled: bool = True
    model_name: str = "mlcycle-${data.name}"
    challenger_alias: str = "challenger"
    champion_alias: str = "champion"
    gate: GateConfig = field(default_factory=GateConfig)
    lock: LockConfig = field(default_factory=LockConfig)
