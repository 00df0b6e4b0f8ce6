"""Pruning on a search space with a hopeless region: k-nearest neighbours with very few
neighbours overfit and score far below the rest after the first folds. Pruned trials end
KILLED with the number of folds they scored."""

from __future__ import annotations

from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.config.schema import EstimatorSpec

KNN = EstimatorSpec(
    estimator="sklearn.neighbors.KNeighborsClassifier",
    params={},
    search_space={"n_neighbors": {"type": "int", "low": 1, "high": 80, "log": True}},
)


def test_median_pruner_stops_hopeless_trials_and_their_runs_end_killed(tiny_cfg):
    cfg = tiny_cfg(
        "stages=[ingest,preprocess,features,tune]", "tune.sampler=random", "tune.pruner=median",
        "tune.pruner_startup_trials=3", "tune.n_trials=16", "tune.cv_folds=4",
    )
    cfg.model.classifier = KNN
    result = pipeline.run(cfg)
    client = MlflowClient()
    exp = [result.experiment_id]
    tune = client.search_runs(exp, filter_string="tags.`mlcycle.stage` = 'tune'")[0]
    trials = client.search_runs(exp, filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    pruned = [t for t in trials if t.info.status == "KILLED"]
    complete = [t for t in trials if t.info.status == "FINISHED"]
    assert len(trials) == 16 and len(pruned) + len(complete) == 16
    assert pruned, "nothing was pruned"
    assert tune.data.metrics["trials_pruned"] == len(pruned)
    for run in pruned:
        folds = int(run.data.tags["mlcycle.pruned_at_fold"])
        assert 1 <= folds < 4
        assert run.data.tags["mlcycle.trial_state"] == "PRUNED"
        assert sorted(k for k in run.data.metrics if k.startswith("fold_")) == [f"fold_{i}_roc_auc" for i in range(folds)]
        assert "cv_roc_auc" not in run.data.metrics and "partial_cv_roc_auc" in run.data.metrics
    for run in complete:
        assert len([k for k in run.data.metrics if k.startswith("fold_")]) == 4
    # the pruner stopped the hopeless region: pruned trials had fewer neighbours
    k_pruned = sorted(int(t.data.params["n_neighbors"]) for t in pruned)
    k_complete = sorted(int(t.data.params["n_neighbors"]) for t in complete)
    assert k_pruned[len(k_pruned) // 2] < k_complete[len(k_complete) // 2]
    best = max(complete, key=lambda t: t.data.metrics["cv_roc_auc"])
    assert tune.data.metrics["best_cv_roc_auc"] == best.data.metrics["cv_roc_auc"]
