"""The value handed from stage to stage. Frozen: a stage returns a new State."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlcycle.data import LoadedData, Schema, Splits
from mlcycle.features import FeaturePlan


@dataclass(frozen=True)
class State:
    # ingest
    data: LoadedData | None = None
    schema: Schema | None = None
    splits: Splits | None = None
    data_digest: str | None = None
    # preprocess: training rows after row-level cleaning (duplicates, anomalies)
    train: pd.DataFrame | None = None
    validation: pd.DataFrame | None = None
    # features
    plan: FeaturePlan | None = None
    preprocessor: Any = None  # unfitted sklearn Pipeline: cleaning + features
    # tune
    metric: str | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    # train
    model: Any = None  # fitted sklearn Pipeline: cleaning + features + estimator
    # evaluate
    test_metrics: dict[str, float] = field(default_factory=dict)
    # register
    model_uri: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    aliases: tuple[str, ...] = ()
    promoted: bool = False  # the gate moved `champion` to this version
    gate_summary: str | None = None  # the gate's one-line verdict with its numbers/reasons
    # filled by the orchestrator: root_run_id, git_commit, config_fingerprint, mlcycle_version
    lineage: dict[str, str] = field(default_factory=dict)
