from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from mlcycle.config.schema import Task
from mlcycle.core.evaluation import compute_metrics, greater_is_better, plots, primary_metric, score


def test_binary_metrics_match_sklearn_with_string_labels():
    y = np.array(["no", "yes", "yes", "no", "yes", "no"])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    pred = np.array(["no", "yes", "no", "no", "yes", "yes"])
    m = compute_metrics(Task.binary, y, pred, proba, ("no", "yes"))
    pos = (y == "yes").astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(pos, proba[:, 1]))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(pos, proba[:, 1]))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label="yes"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=["no", "yes"]))
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_multiclass_uses_macro_averages():
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 1, 0, 1, 2]] * 0.7 + 0.1
    pred = proba.argmax(axis=1)
    m = compute_metrics(Task.multiclass, y, pred, proba, (0, 1, 2))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def test_regression_metrics():
    m = compute_metrics(Task.regression, [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m == pytest.approx({"rmse": np.sqrt(4 / 3), "mae": 2 / 3, "r2": 1 - 4 / 2})


def test_primary_metric_resolution_and_direction():
    assert primary_metric("auto", Task.binary) == "roc_auc"
    assert primary_metric("auto", Task.regression) == "rmse"
    assert not greater_is_better("rmse") and greater_is_better("roc_auc")
    with pytest.raises(ValueError, match="does not apply"):
        primary_metric("rmse", Task.binary)


def test_score_matches_compute_metrics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + rng.normal(size=80) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    full = compute_metrics(Task.binary, y, model.predict(X), model.predict_proba(X), (0, 1))
    for name in ("roc_auc", "f1", "log_loss"):
        assert score(name, model, X, y, Task.binary, (0, 1)) == pytest.approx(full[name])


def test_plots_for_each_task():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]])
    figs = plots(Task.binary, y, proba.argmax(1), proba, (0, 1))
    assert set(figs) == {"confusion_matrix.png", "roc_curve.png", "precision_recall_curve.png", "calibration_curve.png"}
    figs = plots(Task.regression, np.array([1.0, 2.0]), np.array([1.5, 2.5]))
    assert set(figs) == {"residuals.png", "predicted_vs_actual.png"}
