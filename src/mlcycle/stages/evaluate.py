"""evaluate: score the trained Pipeline on the held-out test split; metrics and plots."""

from __future__ import annotations

from dataclasses import replace

from mlcycle.config import Config
from mlcycle.evaluation import compute_metrics, plots, predict_all
from mlcycle.state import State
from mlcycle.tracking import ActiveRun, log_figures


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, test = state.schema, state.splits.test
    X, y = test[list(schema.features)], test[schema.target]
    y_pred, proba = predict_all(state.model, X, schema.task)
    metrics = compute_metrics(schema.task, y, y_pred, proba, schema.classes)

    run.log.log_metrics({f"test_{k}": v for k, v in metrics.items()} | {"rows_test": len(test)})
    if cfg.evaluate.plots:
        log_figures(plots(schema.task, y, y_pred, proba, schema.classes), "plots")
    return replace(state, test_metrics=metrics)
