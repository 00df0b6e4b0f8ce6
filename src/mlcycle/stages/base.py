"""What a stage is, and the value handed from stage to stage.

A stage module defines ``STAGE = Stage(...)``: its name, the config keys it reads (its
step-cache fingerprint), ``run`` (State in, new State out; the orchestrator opens and
closes its MLflow run), and ``save``/``load`` for what it caches (the files that rebuild
its part of State on a cache hit). ``State`` is frozen: a stage returns ``replace(state, ...)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlcycle.config.schema import Config
from mlcycle.core.data import LoadedData, Schema, Splits, restore_types
from mlcycle.core.features import FeaturePlan
from mlcycle.tracking.runs import ActiveRun

CACHE_DIR = "cache"  # the artifact folder a stage's cached outputs go to


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


def _no_inputs(cfg: Config) -> dict[str, str]:
    return {}


def _no_check(cfg: Config, tracking_uri: str) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline and everything the orchestrator and the cache need of it."""

    name: str
    reads: tuple[str, ...]  # dotted config keys its outputs depend on (its inputs: upstream)
    run: Callable[[State, Config, ActiveRun], State]
    save: Callable[[State, Path], None]  # write what rebuilds its part of State into a folder
    load: Callable[[State, Config, Path], State]  # rebuild it from the downloaded artifacts
    keeps: tuple[str, ...] = (CACHE_DIR,)  # artifact folders ``load`` reads (``save`` fills cache/)
    inputs: Callable[[Config], dict[str, str]] = _no_inputs  # outside content it reads (a file's hash)
    precheck: Callable[[Config, str], None] = _no_check  # refuse a setting before any run exists


# --------------------------------------------------------------------------- cache files
def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1))


def read_json(folder: Path, name: str) -> Any:
    return json.loads((folder / CACHE_DIR / name).read_text())


def read_frame(path: Path, schema: Schema) -> pd.DataFrame:
    """A split read back from Parquet, with the exact dtypes ingest gave it."""
    return restore_types(pd.read_parquet(path), schema)
