"""evaluate: score the trained Pipeline on the held-out test split; metrics and plots.

The labels are the Pipeline's own (at its decision threshold, when it has one); the
threshold and the label metrics at the estimator's default rule are logged beside them.
Caches the test metrics (the plots stay on the run that drew them).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mlcycle.config.schema import Config
from mlcycle.core.evaluation import compute_metrics, plots, predict_all
from mlcycle.core.threshold import threshold_of
from mlcycle.stages.base import Stage, State, read_json, write_json
from mlcycle.tracking.artifacts import log_figures
from mlcycle.tracking.runs import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, test = state.schema, state.splits.test
    X, y = test[list(schema.features)], test[schema.target]
    y_pred, proba = predict_all(state.model, X, schema.task)
    metrics = compute_metrics(schema.task, y, y_pred, proba, schema.classes)

    logged = {f"test_{k}": v for k, v in metrics.items()} | {"rows_test": len(test)}
    if (threshold := threshold_of(state.model)) is not None:
        # the same rows labelled by the estimator's default rule (the most probable class)
        default = compute_metrics(schema.task, y, np.asarray(schema.classes)[np.argmax(proba, axis=1)], None, schema.classes)
        logged |= {"threshold": threshold, **{f"test_{k}_at_0.5": default[k] for k in ("precision", "recall", "f1")}}
    run.log.log_metrics(logged)
    if cfg.evaluate.plots:
        log_figures(plots(schema.task, y, y_pred, proba, schema.classes), "plots")
    return replace(state, test_metrics=metrics)


def save(state: State, out: Path) -> None:
    write_json(out / "evaluation.json", {"test_metrics": state.test_metrics})


def load(state: State, cfg: Config, files: Path) -> State:
    return replace(state, test_metrics=read_json(files, "evaluation.json")["test_metrics"])


STAGE = Stage("evaluate", ("evaluate",), run, save, load)
