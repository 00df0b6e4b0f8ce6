"""model=auto end to end on a private sqlite store: one study over the shipped families, each
trial run tagged with its family, the best per family on the tune run and in the report,
the best configuration refitted and registered, MLflow's loader serving it; tune.timeout
stops the search; low-fidelity trials stopped by successive halving keep their runs."""

from __future__ import annotations

import time

import mlflow
import numpy as np
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.report import REPORT_ARTIFACT
from mlcycle.tracking.registration import FAMILY_TAG
from tests.integration.runs import stage_runs

FAMILIES = ("hist_gradient_boosting", "random_forest", "extra_trees", "logistic_regression")
SMALL = ["model=auto", "data.n_rows=1500", "tune.n_trials=6", "evaluate.plots=false", "tune.plots=false"]


def test_auto_searches_every_family_and_registers_the_best(tiny_cfg):
    started = time.perf_counter()
    result = pipeline.run(tiny_cfg(*SMALL))
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
