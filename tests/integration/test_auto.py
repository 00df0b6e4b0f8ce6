"""model=auto end to end on a private sqlite store: one study over the shipped families, each
trial run tagged with its family, the best per family on the tune run and in the report,
the best configuration refitted and registered, MLflow's loader serving it; tune.timeout
stops the search; low-fidelity trials stopped by successive halving keep their runs."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.core.threshold import threshold_of
from mlcycle.report import REPORT_ARTIFACT
from mlcycle.tracking.registration import FAMILY_TAG
from tests.integration.runs import CACHED, stage_runs

FAMILIES = ("hist_gradient_boosting", "random_forest", "extra_trees", "logistic_regression")
SMALL = ["model=auto", "data.n_rows=1500", "tune.n_trials=6", "evaluate.plots=false", "tune.plots=false"]


def test_auto_searches_every_family_and_registers_the_best(tiny_cfg):
    started = time.perf_counter()
    result = pipeline.run(tiny_cfg(*SMALL, "model.ensemble.enabled=false"))  # the single best (ensemble: below)
    seconds = time.perf_counter() - started
    state, client = result.state, MlflowClient()
    runs = stage_runs(client, result.run_id)
    tune = runs["tune"]
    trials = client.search_runs([tune.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    families = [t.data.tags["mlcycle.family"] for t in trials]
    assert len(trials) == 6 and set(FAMILIES) <= set(families)  # each family tried first
    for trial in trials:
        family = trial.data.tags["mlcycle.family"]
        assert trial.data.params["family"] == family
        assert all(k == "family" or k.startswith(f"{family}.") for k in trial.data.params)

    # the tune run: the best score of each family, and which one won
    m, p = tune.data.metrics, tune.data.params
    best_family = p["best_family"]
    assert best_family in FAMILIES
    scores = {f: m[f"best_cv_score_{f}"] for f in FAMILIES}
    assert max(scores.values()) == m["best_cv_roc_auc"] == scores[best_family] == state.cv_score
    assert sum(m[f"family_trials_{f}"] for f in FAMILIES) == 6

    # refitted as that family's estimator and registered under that family
    train = runs["train"].data.params
    assert train["family"] == best_family
    estimator = type(state.model.steps[-1][1].estimator_).__name__  # inside the decision threshold
    assert train["estimator"].endswith(estimator)
    version = client.get_model_version("mlcycle-ecommerce", state.registered_version)
    assert version.tags[FAMILY_TAG] == best_family
    served = mlflow.pyfunc.load_model("models:/mlcycle-ecommerce@champion")
    X = state.splits.test[list(state.schema.features)]
    np.testing.assert_array_equal(np.asarray(served.predict(X)), state.model.predict(X))

    # the report card lists the families, best first, the chosen one marked
    root = client.get_run(result.run_id)
    html = mlflow.artifacts.load_text(f"{root.info.artifact_uri}/{REPORT_ARTIFACT}")
    assert 'id="families"' in html and f'data-family="{best_family}"' in html
    assert html.index(f'data-family="{best_family}"') < min(html.index(f'data-family="{f}"') for f in FAMILIES if f != best_family)
    assert root.info.run_name == "auto-ecommerce"
    print(f"model=auto, 1,500 rows, 6 trials: {seconds:.1f} s")


def test_auto_honours_the_tune_timeout(tiny_cfg):
    started = time.perf_counter()
    result = pipeline.run(tiny_cfg(*SMALL, "tune.n_trials=500", "tune.timeout=4", "registry.enabled=false",
                                   "report.enabled=false"))
    tune = stage_runs(MlflowClient(), result.run_id)["tune"].data.metrics
    assert 1 <= tune["trials_complete"] < 500
    assert tune["study_seconds"] < 4 + 15  # a trial that started before the deadline may finish
    assert time.perf_counter() - started < 120


def test_low_fidelity_trials_stopped_by_successive_halving_keep_their_runs(tiny_cfg):
    """tune.fidelity=subsample: 3,000 rows, 3 folds of 1,400 training rows, so the 1/3 rung
    (467 rows) is scored and the 1/9 one (156 < MIN_ROWS) is not; the pruner stops trials
    there, and each still has its child run: KILLED, at which share of the rows, its score."""
    result = pipeline.run(tiny_cfg(*SMALL, "data.n_rows=3000", "tune.cv_folds=3", "tune.n_trials=12",
                                   "tune.sampler=random", "tune.pruner=successive_halving", "tune.fidelity=subsample",
                                   "registry.enabled=false", "report.enabled=false"))
    client = MlflowClient()
    tune = stage_runs(client, result.run_id)["tune"]
    assert tune.data.params["fidelity"] == "subsample" and tune.data.params["cheap_start"] == "True"
    trials = client.search_runs([tune.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    pruned = [t for t in trials if t.info.status == "KILLED"]
    complete = [t for t in trials if t.info.status == "FINISHED"]
    assert len(trials) == 12 and pruned and complete and len(pruned) + len(complete) == 12
    assert tune.data.metrics["trials_pruned"] == len(pruned)
    for run in pruned:
        assert run.data.tags["mlcycle.pruned_at_rows"] == "3/9" and "mlcycle.pruned_at_fold" not in run.data.tags
        assert run.data.metrics["partial_cv_roc_auc"] == run.data.metrics["cv_roc_auc_rows_3_9"]
        assert "cv_roc_auc" not in run.data.metrics and not [k for k in run.data.metrics if k.startswith("fold_")]
    for run in complete:
        assert "cv_roc_auc_rows_3_9" in run.data.metrics and len([k for k in run.data.metrics if k.startswith("fold_")]) == 3
    # each family's first trial ran at its conf/model start point (tune.cheap_start)
    first = min(trials, key=lambda t: int(t.data.tags["mlcycle.trial_number"]))
    assert first.data.params == {"family": "hist_gradient_boosting", "hist_gradient_boosting.learning_rate": "0.1",
                                 "hist_gradient_boosting.max_leaf_nodes": "31", "hist_gradient_boosting.min_samples_leaf": "20",
                                 "hist_gradient_boosting.l2_regularization": "1e-06"}
    assert tune.data.metrics["best_cv_roc_auc"] == max(t.data.metrics["cv_roc_auc"] for t in complete)


ENSEMBLE_SMALL = ["model=auto", "tune.n_trials=8", "tune.cv_folds=3", "evaluate.plots=false", "tune.plots=false"]


def test_the_ensemble_is_chosen_registered_and_served_through_pyfunc(tiny_cfg):
    """diabetes (442 rows, regression): the soft vote of the families' bests beats the best
    single configuration's CV rmse; ONE Pipeline whose model step is a VotingRegressor,
    registered as family "ensemble", served by MLflow's pyfunc loader (the skops allowlist)."""
    started = time.perf_counter()
    result = pipeline.run(tiny_cfg(*ENSEMBLE_SMALL, "data=diabetes", "report.enabled=true"))
    seconds = time.perf_counter() - started
    state, client = result.state, MlflowClient()
    runs = stage_runs(client, result.run_id)
    m, p = runs["tune"].data.metrics, runs["tune"].data.params
    assert p["best_family"] == "ensemble" and p["ensemble_chosen"] == "True"
    weights = {f: m[f"ensemble_weight_{f}"] for f in FAMILIES if f"ensemble_weight_{f}" in m}
    assert len(weights) >= 2 and p["ensemble_members"] == ",".join(f"{f}:{int(w)}" for f, w in weights.items())
    assert m["ensemble_cv_rmse"] < m["best_cv_rmse"] == min(m[f"best_cv_score_{f}"] for f in FAMILIES)
    assert state.cv_score == m["ensemble_cv_rmse"] and "ensemble" in state.best_params
    assert m["ensemble_refits"] == 0  # the members' fold predictions are those their trials made

    vote = state.model.steps[-1][1]
    assert type(vote).__name__ == "VotingRegressor"
    assert [name for name, _ in vote.estimators] == list(weights) and vote.weights == [int(w) for w in weights.values()]
    train = runs["train"].data.params
    assert train["family"] == "ensemble" and train["estimator"] == "sklearn.ensemble.VotingRegressor"
    version = client.get_model_version("mlcycle-diabetes", state.registered_version)
    assert version.tags[FAMILY_TAG] == "ensemble"
    served = mlflow.pyfunc.load_model("models:/mlcycle-diabetes@champion")
    X = state.splits.test[list(state.schema.features)]
    np.testing.assert_allclose(np.asarray(served.predict(X)).ravel(), state.model.predict(X))

    # the report's families table: the ensemble row first (best CV), marked chosen, its members
    html = mlflow.artifacts.load_text(f"{client.get_run(result.run_id).info.artifact_uri}/{REPORT_ARTIFACT}")
    row = html.index('data-family="ensemble"')
    assert row < min(html.index(f'data-family="{f}"') for f in FAMILIES)
    cells = html[row:html.index("</tr>", row)]
    assert "<b>chosen</b>" in cells and all(f"{f} × {int(w)}" in cells for f, w in weights.items())
    print(f"model=auto + ensemble, diabetes, 8 trials: {seconds:.1f} s")


def test_the_single_best_stays_when_the_ensemble_is_not_better(tiny_cfg):
    """One round of selection is the best single configuration alone: never kept."""
    result = pipeline.run(tiny_cfg(*ENSEMBLE_SMALL, "data=diabetes", "model.ensemble.rounds=1",
                                   "registry.enabled=false", "report.enabled=false"))
    tune = stage_runs(MlflowClient(), result.run_id)["tune"].data
    assert tune.params["ensemble_chosen"] == "False" and tune.params["best_family"] in FAMILIES
    assert tune.metrics["ensemble_cv_rmse"] == pytest.approx(tune.metrics["best_cv_rmse"], abs=1e-9)
    assert "ensemble" not in result.state.best_params and result.state.cv_score == tune.metrics["best_cv_rmse"]
    assert type(result.state.model.steps[-1][1]).__name__ != "VotingRegressor"


def test_a_binary_ensemble_carries_its_threshold_and_an_identical_rerun_hits_the_caches(tiny_cfg):
    """breast_cancer: the vote inside the decision threshold (FixedThresholdClassifier); a
    rerun of the same config reuses the tune and train stages and gives the same model."""
    cfg = tiny_cfg(*ENSEMBLE_SMALL, *CACHED, "data=breast_cancer", "registry.enabled=false", "report.enabled=false")
    first = pipeline.run(cfg)
    step = first.state.model.steps[-1][1]
    assert type(step).__name__ == "FixedThresholdClassifier"
    assert type(step.estimator_).__name__ == "VotingClassifier" and step.estimator_.voting == "soft"
    assert 0 < threshold_of(first.state.model) < 1
    X = first.state.splits.test[list(first.state.schema.features)]
    labels = first.state.model.predict(X)
    proba = first.state.model.predict_proba(X)[:, 1]
    classes = np.asarray(first.state.schema.classes)
    np.testing.assert_array_equal(labels, classes[(proba >= threshold_of(first.state.model)).astype(int)])

    again = pipeline.run(cfg)
    hits = MlflowClient().get_run(again.run_id).data.tags["mlcycle.cache_hits"].split(",")
    assert {"tune", "train"} <= set(hits)
    assert again.state.best_params == first.state.best_params and "ensemble" in again.state.best_params
    np.testing.assert_array_equal(again.state.model.predict_proba(X), first.state.model.predict_proba(X))
