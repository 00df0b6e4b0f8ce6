"""train: refit the best configuration (of the best family, or model=auto's ensemble of the
families' bests) on train + validation as ONE sklearn Pipeline.

A binary classifier first gets its decision threshold (``model.threshold``, core/threshold.py):
the configuration fitted on the training rows, the threshold chosen on the validation rows,
then the Pipeline refitted on both with that threshold as its ``model`` step. Caches the
fitted Pipeline (skops; restored through the one safe loader).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import skops.io
from sklearn.base import clone

from mlcycle.config.schema import Config
from mlcycle.core import threshold as thresholds
from mlcycle.core.modeling import build_model, families, full_pipeline
from mlcycle.stages.base import CACHE_DIR, Stage, State
from mlcycle.tracking.flavor import load_skops
from mlcycle.tracking.runs import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema = state.schema
    # one family's configuration, or model=auto's ensemble (a soft vote of the families' bests)
    family, name, estimator, params = build_model(families(cfg.model, schema.task), state.best_params, schema.task, cfg.seed)
    features, target = list(schema.features), schema.target
    fit_rows = pd.concat([state.train, state.validation], ignore_index=True)
    chosen, logged = None, {}
    if thresholds.applies(cfg.model.threshold, schema.task):
        started = time.perf_counter()
        on_train = full_pipeline(state.preprocessor, clone(estimator)).fit(state.train[features], state.train[target])
        chosen = thresholds.choose(on_train, state.validation[features], state.validation[target],
                                   cfg.model.threshold, schema.classes)
        estimator = thresholds.at_threshold(estimator, chosen)
        logged = {"threshold": chosen.value, f"val_{chosen.objective}_at_threshold": chosen.score,
                  "threshold_seconds": time.perf_counter() - started}
    model = full_pipeline(state.preprocessor, estimator)

    started = time.perf_counter()
    model.fit(fit_rows[features], fit_rows[target])
    fit_seconds = time.perf_counter() - started

    objective = cfg.model.threshold.objective.value if chosen else "none"
    run.log.log_params({"estimator": name, "family": family, "pipeline_steps": [name for name, _ in model.steps],
                        "threshold_objective": objective, **params})
    run.log.log_metrics({"rows_fit": len(fit_rows), "fit_seconds": fit_seconds, **logged})
    return replace(state, model=model)


def save(state: State, out: Path) -> None:
    (out / "model.skops").write_bytes(skops.io.dumps(state.model))


def load(state: State, cfg: Config, files: Path) -> State:
    return replace(state, model=load_skops((files / CACHE_DIR / "model.skops").read_bytes()))


STAGE = Stage("train", ("model", "seed"), run, save, load)
