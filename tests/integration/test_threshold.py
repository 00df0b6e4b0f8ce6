"""The decision threshold on the default data (17.8 % buyers): chosen on the validation rows,
carried inside the registered Pipeline, so MLflow's loader and `mlcycle predict` return
labels at it; probabilities unchanged; `model.threshold.objective=none` keeps the
estimator's own rule. Real pipeline runs on a private sqlite store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.model_selection import FixedThresholdClassifier

from mlcycle import pipeline
from mlcycle.cli import main
from tests.integration.runs import stage_runs

# the default data and model, small enough for seconds
SMALL = ["data.n_rows=4000", "model=hist_gradient_boosting", "tune.n_trials=2", "evaluate.plots=false",
         "tune.plots=false", "report.enabled=false"]


def test_the_champion_labels_at_its_threshold_everywhere(tiny_cfg, tmp_path):
    result = pipeline.run(tiny_cfg(*SMALL))
    state, client = result.state, MlflowClient()
    runs = stage_runs(client, result.run_id)
    train, evaluate = runs["train"].data, runs["evaluate"].data
    threshold = evaluate.metrics["threshold"]
    assert train.params["threshold_objective"] == "f1" and train.metrics["threshold"] == threshold
    assert 0.05 < threshold < 0.5
    assert "val_f1_at_threshold" in train.metrics

    # the labels are useful now: far more buyers found than at 0.5, at a better F1
    m = evaluate.metrics
    assert m["test_recall"] >= 2 * m["test_recall_at_0.5"] and m["test_recall"] > 0.4, m
    assert m["test_f1"] > m["test_f1_at_0.5"]
    assert state.test_metrics["recall"] == m["test_recall"]  # what the gate and the root run see

    step = state.model.steps[-1][1]
    assert isinstance(step, FixedThresholdClassifier) and step.threshold == threshold
    X = state.splits.test[list(state.schema.features)]
    proba = state.model.predict_proba(X)
    classes = np.asarray(state.model.classes_)
    expected = classes[(proba[:, 1] >= threshold).astype(int)]

    # MLflow's own loader of the registered version: labels at the threshold, same probabilities
    served = mlflow.pyfunc.load_model(f"models:/mlcycle-ecommerce/{state.registered_version}")
    np.testing.assert_array_equal(np.asarray(served.predict(X)), expected)
    probabilities = served.predict(X, params={"output": "probabilities"})
    np.testing.assert_allclose(probabilities[f"probability_{classes[1]}"].to_numpy(), proba[:, 1], rtol=1e-12)

    # `mlcycle predict` of the champion
    batch, scored = tmp_path / "batch.csv", tmp_path / "scored.csv"
    X.to_csv(batch, index=False)
    assert main(["predict", "--input", str(batch), "--output", str(scored)]) == 0
    np.testing.assert_array_equal(pd.read_csv(scored)["prediction"].to_numpy(), expected)


def test_objective_none_keeps_the_estimator_s_own_rule(tiny_cfg):
    result = pipeline.run(tiny_cfg(*SMALL, "model.threshold.objective=none", "registry.enabled=false"))
    state = result.state
    step = state.model.steps[-1][1]
    assert type(step).__name__ == "HistGradientBoostingClassifier"
    runs = stage_runs(MlflowClient(), result.run_id)
    assert runs["train"].data.params["threshold_objective"] == "none"
    assert "threshold" not in runs["train"].data.metrics and "threshold" not in runs["evaluate"].data.metrics
    X = state.splits.test[list(state.schema.features)]
    proba = state.model.predict_proba(X)
    np.testing.assert_array_equal(state.model.predict(X), np.asarray(state.model.classes_)[proba.argmax(axis=1)])
