"""tune: an Optuna study over the model's search space, one child run per trial.

Trials are scored by cross-validation on the training rows. Each fold's preprocessing is
fitted once, up front, so a trial only fits estimators. Trial runs are written by a
background thread (TrialWriter): the study never waits for the tracking store.
"""

from __future__ import annotations

import time
from dataclasses import replace

from sklearn.base import clone

from mlcycle.config import Config
from mlcycle.evaluation import primary_metric, score
from mlcycle.modeling import (
    build_estimator,
    cv_splitter,
    estimator_spec,
    full_pipeline,
    prepare_folds,
)
from mlcycle.state import State
from mlcycle.tracking import ActiveRun, TrialRecord, TrialWriter
from mlcycle.tuning import TrialResult, run_study

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, tune = state.schema, cfg.tune
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    spec = estimator_spec(cfg.model, schema.task)
    X, y = state.train[list(schema.features)], state.train[schema.target]

    started = time.perf_counter()
    splitter = cv_splitter(schema.task, tune.cv_folds, cfg.seed, time_ordered=bool(cfg.data.time_column))
    folds = prepare_folds(state.preprocessor, X, y, splitter)
    folds_seconds = time.perf_counter() - started

    writer = TrialWriter(run.log.client, run.experiment_id, run.run_id)

    def on_trial(result: TrialResult) -> None:
        metrics = {f"cv_{metric}": result.value} if result.value is not None else {}
        metrics |= {f"fold_{i}_{metric}": v for i, v in enumerate(result.fold_scores)}
        tags = {"mlcycle.trial_number": str(result.number), "mlcycle.trial_state": result.state}
        if result.error:
            tags["mlcycle.error"] = result.error[:5000]
        writer.submit(
            TrialRecord(
                name=f"trial-{result.number:03d}",
                params=result.params,
                metrics=metrics,
                tags=tags,
                status=STATUS[result.state],
                start_ms=result.start_ms,
                end_ms=result.end_ms,
            )
        )

    try:
        result = run_study(
            spec, folds, metric, schema.task, schema.classes,
            n_trials=tune.n_trials, timeout=tune.timeout, sampler=tune.sampler, seed=tune.seed, on_trial=on_trial,
        )
    finally:
        writer.close()
    study_seconds = time.perf_counter() - started - folds_seconds

    # Sanity check against the held-out validation rows: best config fitted on train only.
    best = full_pipeline(state.preprocessor, build_estimator(spec, result.best_params, cfg.seed))
    best.fit(X, y)
    val = state.validation
    val_score = score(metric, best, val[list(schema.features)], val[schema.target], schema.task, schema.classes)

    run.log.log_params(
        {"metric": metric, "sampler": tune.sampler, "n_trials": tune.n_trials, "cv_folds": tune.cv_folds,
         "estimator": spec.estimator, **{f"best.{k}": v for k, v in result.best_params.items()}}
    )
    run.log.log_metrics(
        {
            f"best_cv_{metric}": result.best_value,
            f"val_{metric}": val_score,
            "trials_complete": result.n_complete,
            "trials_pruned": result.n_pruned,
            "trials_failed": result.n_failed,
            "folds_prepare_seconds": folds_seconds,
            "study_seconds": study_seconds,
        }
    )
    return replace(state, metric=metric, best_params=result.best_params, cv_score=result.best_value, preprocessor=clone(state.preprocessor))
