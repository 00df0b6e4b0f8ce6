"""train: refit the best configuration on train + validation as ONE sklearn Pipeline.

Caches the fitted Pipeline (skops; restored through the one safe loader).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import skops.io

from mlcycle.config.schema import Config
from mlcycle.core.modeling import build_estimator, estimator_spec, full_pipeline
from mlcycle.stages.base import CACHE_DIR, Stage, State
from mlcycle.tracking.flavor import load_skops
from mlcycle.tracking.runs import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema = state.schema
    spec = estimator_spec(cfg.model, schema.task)
    fit_rows = pd.concat([state.train, state.validation], ignore_index=True)
    model = full_pipeline(state.preprocessor, build_estimator(spec, state.best_params, cfg.seed))

    started = time.perf_counter()
    model.fit(fit_rows[list(schema.features)], fit_rows[schema.target])
    fit_seconds = time.perf_counter() - started

    run.log.log_params({"estimator": spec.estimator, "pipeline_steps": [name for name, _ in model.steps], **state.best_params})
    run.log.log_metrics({"rows_fit": len(fit_rows), "fit_seconds": fit_seconds})
    return replace(state, model=model)


def save(state: State, out: Path) -> None:
    (out / "model.skops").write_bytes(skops.io.dumps(state.model))


def load(state: State, cfg: Config, files: Path) -> State:
    return replace(state, model=load_skops((files / CACHE_DIR / "model.skops").read_bytes()))


STAGE = Stage("train", ("model", "seed"), run, save, load)
