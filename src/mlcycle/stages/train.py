"""train: refit the best configuration on train + validation as ONE sklearn Pipeline."""

from __future__ import annotations

import time
from dataclasses import replace

import pandas as pd

from mlcycle.config import Config
from mlcycle.modeling import build_estimator, estimator_spec, full_pipeline
from mlcycle.state import State
from mlcycle.tracking import ActiveRun


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
