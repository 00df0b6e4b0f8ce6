"""Parallel trials in one invocation (threads and spawned processes) against a real store:
every trial run is a child of the tune run, one per study trial, and the tune run carries
the study summary."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.core.liveness import owner_token

TUNE_ONLY = "stages=[ingest,preprocess,features,tune]"
# ~1 s per trial: the study outlasts the few seconds a spawned worker takes to start
SLOWER = ["model=random_forest", "model.classifier.params.n_estimators=150"]


def children(client, run_id, experiment_id):
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1000)


def tune_tree(result):
    client = MlflowClient()
    stages = {r.info.run_name: r for r in children(client, result.run_id, result.experiment_id)}
    tune = stages["tune"]
    return client, tune, children(client, tune.info.run_id, result.experiment_id)


def test_process_workers_log_every_trial_under_the_tune_run(tiny_cfg):
    result = pipeline.run(tiny_cfg(TUNE_ONLY, *SLOWER, "tune.n_trials=10", "tune.n_jobs=3", "tune.parallel=process"))
    client, tune, trials = tune_tree(result)
    assert tune.info.status == "FINISHED"
    assert len(trials) == 10 == tune.data.metrics["trials_complete"] == tune.data.metrics["trials_run"]
    assert sorted(int(t.data.tags["mlcycle.trial_number"]) for t in trials) == list(range(10))
    assert all(t.data.tags["mlflow.parentRunId"] == tune.info.run_id for t in trials)
    assert all(t.info.status == "FINISHED" and "cv_roc_auc" in t.data.metrics for t in trials)
    workers = {t.data.tags["mlcycle.worker"] for t in trials}
    assert owner_token() in workers  # this process ran trials too ...
    assert len(workers) >= 2  # ... and so did at least one spawned worker
    assert client.search_runs([result.experiment_id], filter_string="attributes.status = 'RUNNING'") == []


def test_threads_on_sqlite_storage_match_the_study(tiny_cfg, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=6", "tune.n_jobs=2", "tune.parallel=thread", f"tune.storage={storage}"))
    _, tune, trials = tune_tree(result)
    study = optuna.load_study(study_name=tune.data.params["study_name"], storage=storage)
    assert len(study.trials) == len(trials) == 6
    by_number = {int(t.data.tags["mlcycle.trial_number"]): t for t in trials}
    for frozen in study.trials:
        run = by_number[frozen.number]
        assert run.data.tags["mlflow.parentRunId"] == tune.info.run_id
        assert float(run.data.params["C"]) == pytest.approx(frozen.params["C"])
        assert run.data.metrics["cv_roc_auc"] == pytest.approx(frozen.value)
    assert tune.data.params["storage"] == storage
    assert tune.data.tags["mlcycle.study_name"] == study.study_name


def test_tune_run_carries_the_study_summary(tiny_cfg):
    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=4"))
    client, tune, trials = tune_tree(result)
    data = tune.data
    best = max(trials, key=lambda t: t.data.metrics["cv_roc_auc"])
    assert data.metrics["best_cv_roc_auc"] == pytest.approx(best.data.metrics["cv_roc_auc"])
    assert data.tags["mlcycle.best_trial"] == best.data.tags["mlcycle.trial_number"]
    assert data.params["best.C"] == best.data.params["C"]
    assert (data.metrics["trials_complete"], data.metrics["trials_pruned"], data.metrics["trials_failed"]) == (4, 0, 0)
    assert 0 <= data.metrics["tracking_blocked_ms_per_trial"] < 1000
    assert {"sampler", "pruner", "n_jobs", "study_name", "storage"} <= set(data.params)
    plots = {a.path for a in client.list_artifacts(tune.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png"}
    assert "param_importances.json" in {a.path for a in client.list_artifacts(tune.info.run_id)}


def test_a_single_trial_still_gets_its_history_plot(tiny_cfg):
    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=1"))
    client, tune, trials = tune_tree(result)
    assert len(trials) == 1
    plots = {a.path for a in client.list_artifacts(tune.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png"}  # importances need 2 trials
