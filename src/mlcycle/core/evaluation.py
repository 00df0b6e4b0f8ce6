"""Metrics and evaluation plots. Pure: no mlflow, no hydra.

Classification: accuracy, precision, recall, f1, roc_auc, pr_auc (average precision),
log_loss, brier (calibration: mean squared error of the class probabilities; multiclass:
macro averages, Brier over all classes). Regression: rmse, mae, r2.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from mlcycle.config.rules import CLASSIFICATION_METRICS, REGRESSION_METRICS
from mlcycle.config.schema import Task

LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "brier"})


def metric_names(task: Task) -> tuple[str, ...]:
    return REGRESSION_METRICS if task is Task.regression else CLASSIFICATION_METRICS


def primary_metric(configured: str, task: Task) -> str:
    """Resolve ``auto`` and check the metric exists for the task."""
    name = ("rmse" if task is Task.regression else "roc_auc") if configured == "auto" else configured
    if name not in metric_names(task):
        raise ValueError(f"metric {name!r} does not apply to a {task.value} task; use one of {list(metric_names(task))}")
    return name


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def compute_metrics(task: Task, y_true, y_pred, proba=None, classes: tuple = ()) -> dict[str, float]:
    """All metrics for the task. ``proba`` columns follow ``classes`` order."""
    y_true = np.asarray(y_true)
    if task is Task.regression:
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred)),
        }
    average = "binary" if task is Task.binary else "macro"
    pos = classes[1] if task is Task.binary else 1
    kwargs = {"average": average, "zero_division": 0}
    if task is Task.binary:
        kwargs["pos_label"] = pos
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, **kwargs)),
        "recall": float(skm.recall_score(y_true, y_pred, **kwargs)),
        "f1": float(skm.f1_score(y_true, y_pred, **kwargs)),
    }
    if proba is not None:
        out |= _probability_metrics(task, y_true, np.asarray(proba), classes)
    return out


def _probability_metrics(task: Task, y_true, proba, classes) -> dict[str, float]:
    out = {
        "log_loss": float(skm.log_loss(y_true, proba, labels=list(classes))),
        "brier": float(skm.brier_score_loss(y_true, proba, labels=list(classes))),
    }
    if task is Task.binary:
        positive = (y_true == classes[1]).astype(int)
        out["roc_auc"] = float(skm.roc_auc_score(positive, proba[:, 1]))
        out["pr_auc"] = float(skm.average_precision_score(positive, proba[:, 1]))
    else:
        onehot = label_binarize(y_true, classes=list(classes))
        present = onehot.sum(axis=0) > 0
        out["roc_auc"] = float(skm.roc_auc_score(onehot[:, present], proba[:, present], average="macro"))
        out["pr_auc"] = float(skm.average_precision_score(onehot[:, present], proba[:, present], average="macro"))
    return out


def predict_all(model, X, task: Task):
    """Predictions and, for classifiers, class probabilities."""
    y_pred = model.predict(X)
    proba = model.predict_proba(X) if task is not Task.regression else None
    return y_pred, proba


PROBABILITY_METRICS = frozenset({"roc_auc", "pr_auc", "log_loss", "brier"})


def score_predictions(metric: str, y, predicted, task: Task, classes: tuple) -> float:
    """One metric of predictions: values (regression) or class probabilities (columns in
    ``classes`` order; labels are the most probable class), as ``score`` reads a model's."""
    if task is Task.regression:
        return compute_metrics(task, y, predicted)[metric]
    proba = np.asarray(predicted)
    if metric in PROBABILITY_METRICS:
        return _probability_metrics(task, np.asarray(y), proba, classes)[metric]
    return compute_metrics(task, y, np.asarray(classes)[np.argmax(proba, axis=1)], None, classes)[metric]


def score(metric: str, model, X, y, task: Task, classes: tuple) -> float:
    """One metric of a fitted model on (X, y)."""
    needs_proba = metric in PROBABILITY_METRICS
    if task is Task.regression:
        return compute_metrics(task, y, model.predict(X))[metric]
    proba = model.predict_proba(X) if needs_proba else None
    y_pred = model.predict(X) if not needs_proba else np.asarray(classes)[np.argmax(proba, axis=1)]
    if needs_proba:
        return _probability_metrics(task, np.asarray(y), proba, classes)[metric]
    return compute_metrics(task, y, y_pred, None, classes)[metric]


# --------------------------------------------------------------------------- plots
def plots(task: Task, y_true, y_pred, proba=None, classes: tuple = ()) -> dict:
    """Evaluation figures by file name (matplotlib Figures; caller saves and closes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures = {}
    y_true = np.asarray(y_true)
    if task is Task.regression:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(y_pred, y_true - y_pred, s=6, alpha=0.5)
        ax.axhline(0, color="k", lw=1)
        ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
        figures["residuals.png"] = fig
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(y_pred, y_true, s=6, alpha=0.5)
        lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xlabel="predicted", ylabel="actual", title="Predicted vs actual")
        figures["predicted_vs_actual.png"] = fig
        return figures

    labels = [str(c) for c in classes]
    fig, ax = plt.subplots(figsize=(5, 4))
    skm.ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(classes), display_labels=labels, ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test)")
    figures["confusion_matrix.png"] = fig
    if proba is None:
        return figures
    proba = np.asarray(proba)
    targets = [(classes[1], 1)] if task is Task.binary else list(zip(classes, range(len(classes)), strict=True))
    fig_roc, ax_roc = plt.subplots(figsize=(5, 4))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 4))
    fig_cal, ax_cal = plt.subplots(figsize=(5, 4))
    for label, col in targets:
        positive = (y_true == label).astype(int)
        if positive.sum() == 0:
            continue
        skm.RocCurveDisplay.from_predictions(positive, proba[:, col], name=str(label), ax=ax_roc)
        skm.PrecisionRecallDisplay.from_predictions(positive, proba[:, col], name=str(label), ax=ax_pr)
        from sklearn.calibration import CalibrationDisplay

        CalibrationDisplay.from_predictions(positive, proba[:, col], n_bins=10, name=str(label), ax=ax_cal)
    ax_roc.set_title("ROC curve (test)")
    ax_pr.set_title("Precision-recall curve (test)")
    ax_cal.set_title("Calibration (test)")
    figures |= {"roc_curve.png": fig_roc, "precision_recall_curve.png": fig_pr, "calibration_curve.png": fig_cal}
    return figures
