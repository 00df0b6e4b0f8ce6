"""The MLflow side of an Optuna study: trial runs and the objective shared with remote
workers.

* ``run_study``: ``core.tuning.optimize`` with every finished trial handed to a trial
  writer (``trials``) and a progress bar; the tune stage and ``mlcycle tune-worker`` both
  run their trials through it.
* ``trial_record``: one trial as a child run: params, the CV score and per-fold scores,
  state and reason as tags.
* ``share_objective`` / ``fetch_objective``: the training rows and the recipe a
  ``tune-worker`` on another machine rebuilds the same CV folds from (tune run artifacts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from mlcycle.config.schema import EstimatorSpec
from mlcycle.core.evaluation import greater_is_better
from mlcycle.core.masking import mask_uri
from mlcycle.core.progress import TrialProgress
from mlcycle.core.tuning import (
    FULL_STEP,
    Objective,
    Outcome,
    Search,
    StudyResult,
    TrialResult,
    best_by_family,
    objective_from_description,
    optimize,
    study_figures,
)
from mlcycle.errors import MlcycleError
from mlcycle.tracking.artifacts import (
    download_artifact,
    log_artifact_dict,
    log_artifact_files,
    log_figures,
)
from mlcycle.tracking.runs import ERROR_TAG, MAX_TAG_LENGTH, STUDY_TAG, ActiveRun
from mlcycle.tracking.trials import TrialRecord, open_writer

log = logging.getLogger(__name__)

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}  # Optuna state -> run status
TRIAL_NUMBER_TAG = "mlcycle.trial_number"
TRIAL_STATE_TAG = "mlcycle.trial_state"
TRIAL_FAMILY_TAG = "mlcycle.family"  # the estimator family the trial fitted (model=auto draws it)
ARTIFACT_DIR = "tune"  # on the tune run: what a tune-worker rebuilds the objective from
OBJECTIVE_FILE = "objective.json"
TRAIN_FILE = "train.parquet"


@dataclass(frozen=True)
class StudyRun:
    result: StudyResult
    writer: str  # thread | process: who wrote the trial runs
    seconds: float  # the study, from opening it to its last trial
    writer_wait: float  # waiting for the writer after the last trial
    metric: str  # the primary metric the trials scored

    def metrics(self) -> dict[str, float]:
        r = self.result
        return {
            "trials_complete": r.counts.complete, "trials_pruned": r.counts.pruned, "trials_failed": r.counts.failed,
            "trials_lost": r.counts.lost, "trials_resumed": r.n_before, "trials_run": r.n_run,
            "study_seconds": self.seconds,
            # time the trial loops spent handing results to the tracking writer, per trial
            "tracking_blocked_ms_per_trial": 1000 * r.blocked_seconds / max(r.n_run, 1),
            "tracking_wait_seconds": self.writer_wait,
        }


# the tune run of model=auto: each family's best CV score and finished trials (+ its name)
FAMILY_BEST, FAMILY_TRIALS = "best_cv_score_", "family_trials_"
# ... and model.ensemble's selection: its CV score (+ the metric), each member's weight (+ family)
ENSEMBLE_CV, ENSEMBLE_WEIGHT = "ensemble_cv_", "ensemble_weight_"
LOGGED = ("sampler", "pruner", "n_trials", "cv_folds", "parallel", "blas_threads", "fidelity", "cheap_start")  # tune.* as the tune run's params


def log_search(run: ActiveRun, search: Search, metric: str, specs: dict[str, EstimatorSpec], threads_per_fit: int | None) -> None:
    """The tune run's parameters: what is searched, how, and in which study."""
    tune = search.tune
    estimators = {"families": list(specs)} if len(specs) > 1 else {"estimator": next(iter(specs.values())).estimator}
    run.log.set_tags({STUDY_TAG: search.study_name})
    run.log.log_params({
        "metric": metric, "study_name": search.study_name, **estimators,
        "storage": mask_uri(tune.storage) if tune.storage else "memory", **{k: getattr(tune, k) for k in LOGGED},
        "n_jobs": tune.n_jobs or "auto", "threads_per_fit": threads_per_fit or "default",
    })


def log_outcome(run: ActiveRun, done: StudyRun, specs: dict[str, EstimatorSpec], family: str,
                metrics: dict[str, float], plots_seed: int | None, ensemble: Outcome | None = None) -> None:
    """The tune run's results: the best trial and its parameters, the study's counts and
    times, each family's best (model=auto), the ensemble selection's score, members and
    weights (``family`` is ``ensemble`` when it was kept), and with ``plots_seed`` the
    study's figures."""
    best, metric = done.result, done.metric
    run.log.log_params({"trial_writer": done.writer, "n_jobs_used": best.n_jobs, "best_family": family,
                        **{f"best.{k}": v for k, v in best.best_params.items()}})
    run.log.set_tags({"mlcycle.best_trial": best.best_number})
    per_family: dict[str, float] = {}
    if len(specs) > 1:
        for name, found in best_by_family(best.study, specs).items():
            per_family[f"{FAMILY_TRIALS}{name}"] = found["trials"]
            if found["best"] is not None:  # a family with no complete trial has no score
                per_family[f"{FAMILY_BEST}{name}"] = found["best"]
    if ensemble is not None:
        chosen = ensemble.selection
        run.log.log_params({"ensemble_members": ",".join(f"{n}:{w}" for n, w in chosen.weights.items()),
                            "ensemble_chosen": ensemble.chosen})
        per_family |= {f"{ENSEMBLE_CV}{metric}": chosen.score, "ensemble_seconds": ensemble.seconds,
                       "ensemble_refits": len(ensemble.refitted),  # members whose trials ran elsewhere
                       **{f"{ENSEMBLE_WEIGHT}{n}": w for n, w in chosen.weights.items()}}
    run.log.log_metrics({f"best_cv_{metric}": best.best_value, **metrics, **done.metrics(), **per_family})
    if plots_seed is not None:
        figures, importances = study_figures(best.study, plots_seed, metric)
        log_figures(figures, "plots")
        if importances:
            log_artifact_dict(importances, "param_importances.json")


def run_study(
    client: MlflowClient, experiment_id: str, tune_run_id: str, objective: Objective, search: Search, *,
    writer: str = "auto", progress: bool = True, **optimize_kwargs: Any,
) -> StudyRun:
    """Run this invocation's trials; each finished trial becomes a child run of ``tune_run_id``."""
    trials = open_writer(client, experiment_id, tune_run_id, writer)
    bar = TrialProgress(greater_is_better(objective.metric), enabled=progress)

    def on_trial(result: TrialResult) -> None:
        trials.submit(trial_record(result, objective.metric))
        bar.update(result.state, result.value, result.number)

    started = time.perf_counter()
    try:
        result = optimize(
            objective, search, on_trial=on_trial, on_start=lambda before, slots: bar.start(slots, before.done),
            on_trial_start=lambda begun: bar.trial_started(begun.number, begun.at), **optimize_kwargs,
        )
    finally:
        bar.close()
        waited = time.perf_counter()
        trials.close()  # raises if any trial run could not be written
        wait = time.perf_counter() - waited
    return StudyRun(result, trials.kind, time.perf_counter() - started, wait, objective.metric)


def trial_record(result: TrialResult, metric: str) -> TrialRecord:
    """One trial run: params, the CV score and per-fold scores, state and reason as tags."""
    metrics = {f"fold_{i}_{metric}": v for i, v in enumerate(result.fold_scores)}
    if result.value is not None:
        metrics[f"cv_{metric}"] = result.value
    tags = {TRIAL_NUMBER_TAG: str(result.number), TRIAL_STATE_TAG: result.state}
    if result.worker:
        tags["mlcycle.worker"] = result.worker
    if result.family:
        tags[TRIAL_FAMILY_TAG] = result.family
    if result.pruned_step is not None:
        tags["mlcycle.pruned_at_fold"] = str(result.pruned_step)
        if result.stopped:
            tags["mlcycle.stopped_by"] = "tune.timeout"
        metrics[f"partial_cv_{metric}"] = sum(result.fold_scores) / len(result.fold_scores)
    for step, value in result.rung_scores:  # tune.fidelity=subsample: CV score on step/9 of the rows
        metrics[f"cv_{metric}_rows_{step}_{FULL_STEP}"] = value
    if result.state == "PRUNED" and result.pruned_step is None and result.rung_scores:
        step, value = result.rung_scores[-1]
        tags["mlcycle.pruned_at_rows"] = f"{step}/{FULL_STEP}"
        metrics[f"partial_cv_{metric}"] = value
    if result.error:
        tags[ERROR_TAG] = result.error[:MAX_TAG_LENGTH]
    return TrialRecord(
        name=f"trial-{result.number:03d}", params=result.params, metrics=metrics, tags=tags,
        status=STATUS[result.state], start_ms=result.start_ms, end_ms=result.end_ms,
    )


# --------------------------------------------------------------------------- remote workers
def share_objective(run: ActiveRun, rows: pd.DataFrame, description: dict, search: Search) -> None:
    """Log, on the tune run, the rows and the recipe a ``tune-worker`` needs to score trials
    exactly like this stage: the training rows as Parquet (with their hash) and the
    objective and search as JSON (never the storage URL: it may hold a password)."""
    with tempfile.TemporaryDirectory() as tmp:
        train_path = Path(tmp) / TRAIN_FILE
        rows.to_parquet(train_path, index=False)
        description = {**description, "train_sha256": _sha256(train_path), "search": search.to_dict()}
        objective_path = Path(tmp) / OBJECTIVE_FILE
        objective_path.write_text(json.dumps(description, indent=1, default=str))
        log_artifact_files([train_path, objective_path], ARTIFACT_DIR)
    log.info(
        "study %s: other machines can join with: mlcycle tune-worker --tune-run-id %s --storage %s",
        search.study_name, run.run_id, mask_uri(search.tune.storage or ""),
    )


def fetch_objective(tune_run_id: str, storage: str) -> tuple[Objective, Search]:
    """What ``share_objective`` logged, rebuilt: the same folds, the same search (on ``storage``)."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-worker-") as tmp:
        try:
            objective_path = download_artifact(tune_run_id, f"{ARTIFACT_DIR}/{OBJECTIVE_FILE}", Path(tmp))
            train_path = download_artifact(tune_run_id, f"{ARTIFACT_DIR}/{TRAIN_FILE}", Path(tmp))
        except Exception as exc:
            raise MlcycleError(f"tune run {tune_run_id} has no objective to share ({exc})") from None
        description = json.loads(objective_path.read_text())
        if _sha256(train_path) != description["train_sha256"]:
            raise MlcycleError(f"{TRAIN_FILE} of tune run {tune_run_id} does not match its recorded hash")
        objective = objective_from_description(description, pd.read_parquet(train_path))
    return objective, Search.from_dict(description["search"], storage)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
