"""tune: an Optuna study over the model's search space, one child run per trial.

Trials are scored by cross-validation on the training rows. Each fold's preprocessing is
fitted once, up front, so a trial only fits estimators. Trial runs are written by a
background writer (``trial_runs``: a forked process for a tracking server, else a thread):
the study never waits for the tracking store. Trials from other threads, processes
(``tune.n_jobs``) or machines (``mlcycle tune-worker``) all become children of this
stage's run.

With a persistent ``tune.storage`` the study is named after the experiment and the search
definition, so a rerun after a crash resumes it: finished trials count toward
``tune.n_trials``, and the runs the crashed process left RUNNING are ended FAILED.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from sklearn.base import clone

from mlcycle import tracking, tuning
from mlcycle.config import Config, as_dict
from mlcycle.evaluation import greater_is_better, primary_metric, score
from mlcycle.liveness import owner_token
from mlcycle.masking import mask_uri
from mlcycle.modeling import (
    build_estimator,
    cv_splitter,
    estimator_spec,
    full_pipeline,
    prepare_folds,
)
from mlcycle.progress import TrialProgress
from mlcycle.state import State
from mlcycle.tracking import ActiveRun
from mlcycle.trial_runs import TrialRecord, open_writer
from mlcycle.tuning import Objective, Search, TrialResult

log = logging.getLogger(__name__)

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
OBJECTIVE_FILE = "objective.json"  # artifacts a tune-worker rebuilds the objective from
TRAIN_FILE = "train.parquet"
ARTIFACT_DIR = "tune"


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, tune = state.schema, cfg.tune
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    spec = estimator_spec(cfg.model, schema.task)
    X, y = state.train[list(schema.features)], state.train[schema.target]

    started = time.perf_counter()
    time_ordered = bool(cfg.data.time_column)
    splitter = cv_splitter(schema.task, tune.cv_folds, cfg.seed, time_ordered=time_ordered)
    folds = prepare_folds(state.preprocessor, X, y, splitter)
    folds_seconds = time.perf_counter() - started
    objective = Objective(spec, tuple(folds), metric, schema.task, schema.classes, cfg.seed)
    search = search_of(cfg, spec, metric, state.data_digest)

    client = run.log.client
    run.log.set_tags({tracking.STUDY_TAG: search.study_name})
    run.log.log_params(
        {
            "metric": metric, "sampler": tune.sampler, "pruner": tune.pruner, "n_trials": tune.n_trials,
            "cv_folds": tune.cv_folds, "n_jobs": tune.n_jobs, "parallel": tune.parallel.value,
            "study_name": search.study_name, "storage": mask_uri(tune.storage) if tune.storage else "memory",
            "estimator": spec.estimator, "blas_threads": tune.blas_threads,
        }
    )
    if tune.storage:
        _close_stale_attempts(client, run, search.study_name)
    if tuning.is_shared(tune.storage):
        description = tuning.describe_objective(
            schema, state.plan, cfg.preprocess, dict(cfg.data.derived_features), spec, metric,
            tune.cv_folds, cfg.seed, time_ordered,
        )
        _log_objective(state.train[[*schema.features, schema.target]], description, search)
    run.log.flush()  # study name and parameters visible to workers while trials run

    writer = open_writer(client, run.experiment_id, run.run_id, tune.trial_writer.value)
    run.log.log_params({"trial_writer": writer.kind})
    progress = TrialProgress(greater_is_better(metric), enabled=tune.progress_bar)

    def on_trial(result: TrialResult) -> None:
        writer.submit(trial_record(result, metric))
        progress.update(result.state, result.value)

    if tuning.is_shared(tune.storage):
        log.info(
            "study %s: other machines can join with: mlcycle tune-worker --tune-run-id %s --storage %s",
            search.study_name, run.run_id, mask_uri(tune.storage),
        )
    study_started = time.perf_counter()
    try:
        result = tuning.optimize(
            objective, search, n_jobs=tune.n_jobs, parallel=tune.parallel.value, on_trial=on_trial,
            on_start=lambda before, slots: progress.start(slots, before.done),
        )
    finally:
        progress.close()
        waited = time.perf_counter()
        writer.close()
        writer_wait = time.perf_counter() - waited
    study_seconds = time.perf_counter() - study_started

    # Sanity check against the held-out validation rows: best config fitted on train only.
    best = full_pipeline(state.preprocessor, build_estimator(spec, result.best_params, cfg.seed))
    best.fit(X, y)
    val = state.validation
    val_score = score(metric, best, val[list(schema.features)], val[schema.target], schema.task, schema.classes)

    counts = result.counts
    run.log.log_params({f"best.{k}": v for k, v in result.best_params.items()})
    run.log.set_tags({"mlcycle.best_trial": result.best_number})
    run.log.log_metrics(
        {
            f"best_cv_{metric}": result.best_value,
            f"val_{metric}": val_score,
            "trials_complete": counts.complete,
            "trials_pruned": counts.pruned,
            "trials_failed": counts.failed,
            "trials_lost": counts.lost,
            "trials_resumed": result.n_before,
            "trials_run": result.n_run,
            "folds_prepare_seconds": folds_seconds,
            "study_seconds": study_seconds,
            # time the trial loops spent handing results to the tracking writer, per trial
            "tracking_blocked_ms_per_trial": 1000 * result.blocked_seconds / max(result.n_run, 1),
            "tracking_wait_seconds": writer_wait,  # waiting for the writer after the last trial
        }
    )
    if tune.plots:
        figures, importances = tuning.study_figures(result.study, cfg.seed)
        tracking.log_figures(figures, "plots")
        if importances:
            tracking.log_artifact_dict(importances, "param_importances.json")
    return replace(
        state, metric=metric, best_params=result.best_params, cv_score=result.best_value,
        preprocessor=clone(state.preprocessor),
    )


def search_of(cfg: Config, spec, metric: str, data_digest: str | None) -> Search:
    """The study's settings. Its name hashes everything that decides a trial's score (data,
    preprocessing, features, estimator and search space, metric, folds, seed), so a rerun of
    the same search resumes the same study and a changed one starts a new study."""
    tune = cfg.tune
    resolved = as_dict(cfg)
    definition = {
        "experiment": cfg.mlflow.experiment_name,
        "data_digest": data_digest,
        "data": {k: v for k, v in resolved["data"].items() if k != "name"},
        "preprocess": resolved["preprocess"],
        "features": resolved["features"],
        "estimator": {"estimator": spec.estimator, "params": spec.params, "search_space": spec.search_space},
        "metric": metric,
        "cv_folds": tune.cv_folds,
        "seed": cfg.seed,
    }
    name = tune.study_name or tuning.study_name(f"{cfg.mlflow.experiment_name}-{cfg.model.name}", definition)
    return Search(
        study_name=name, storage=tune.storage, n_trials=tune.n_trials, timeout=tune.timeout,
        sampler=tune.sampler, pruner=tune.pruner, pruner_startup_trials=tune.pruner_startup_trials,
        seed=tune.seed, heartbeat_interval=tune.heartbeat_interval, grace_period=tune.grace_period,
        max_retry=tune.max_retry, blas_threads=tune.blas_threads,
    )


def trial_record(result: TrialResult, metric: str) -> TrialRecord:
    """One trial run: params, the CV score and per-fold scores, state and reason as tags."""
    metrics = {f"fold_{i}_{metric}": v for i, v in enumerate(result.fold_scores)}
    if result.value is not None:
        metrics[f"cv_{metric}"] = result.value
    tags = {"mlcycle.trial_number": str(result.number), "mlcycle.trial_state": result.state}
    if result.worker:
        tags["mlcycle.worker"] = result.worker
    if result.pruned_step is not None:
        tags["mlcycle.pruned_at_fold"] = str(result.pruned_step)
        metrics[f"partial_cv_{metric}"] = sum(result.fold_scores) / len(result.fold_scores)
    if result.error:
        tags[tracking.ERROR_TAG] = result.error[:5000]
    return TrialRecord(
        name=f"trial-{result.number:03d}",
        params=result.params,
        metrics=metrics,
        tags=tags,
        status=STATUS[result.state],
        start_ms=result.start_ms,
        end_ms=result.end_ms,
    )


def _close_stale_attempts(client, run: ActiveRun, study: str) -> None:
    """Runs of an earlier attempt at this study that a dead process left RUNNING end FAILED
    (the whole pipeline tree); the study itself resumes where it stopped."""
    previous = client.search_runs(
        [run.experiment_id],
        filter_string=f"tags.`{tracking.STUDY_TAG}` = '{study}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    previous = [r for r in previous if r.info.run_id != run.run_id]
    if not previous:
        return
    closed, elsewhere = tracking.close_stale_runs(
        client, previous, f"stale: study {study} was resumed by tune run {run.run_id} ({owner_token()})"
    )
    if closed:
        run.log.set_tags({"mlcycle.closed_stale_runs": ",".join(closed)[:5000]})
        log.info("ended %d run(s) a dead process left RUNNING: %s", len(closed), ", ".join(closed))
    for run_id in elsewhere:
        log.warning("tune run %s of study %s is RUNNING in another process or host; left as is", run_id, study)


def _log_objective(frame, description: dict, search: Search) -> None:
    """The rows and the recipe a ``tune-worker`` needs to score trials exactly like this
    stage: the training rows as Parquet (with their hash) and the objective as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        train_path = Path(tmp) / TRAIN_FILE
        frame.to_parquet(train_path, index=False)
        description = {
            **description,
            "train_sha256": hashlib.sha256(train_path.read_bytes()).hexdigest(),
            "search": {k: v for k, v in asdict(search).items() if k != "storage"},
        }
        objective_path = Path(tmp) / OBJECTIVE_FILE
        objective_path.write_text(json.dumps(description, indent=1, default=str))
        tracking.log_artifact_files([train_path, objective_path], ARTIFACT_DIR)
