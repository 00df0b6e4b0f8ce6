"""The decision threshold of a binary classifier. Pure: no mlflow, no hydra.

A classifier's ``predict`` says "positive" when the positive class's probability is at
least 0.5: on imbalanced data that is almost never (few positives are that sure), so the
labels it serves are barely useful even when its ranking (ROC AUC) is good. Here the
threshold is chosen by scikit-learn's ``TunedThresholdClassifierCV`` (``cv="prefit"``: a
model fitted on the training rows, scored over thresholds on the validation rows) for the
configured objective, and applied by ``FixedThresholdClassifier`` as the Pipeline's
``model`` step: ``predict`` of the registered Pipeline (so ``mlcycle predict``, pyfunc and
``mlflow models serve``) returns labels at that threshold; ``predict_proba`` is the
estimator's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.base import BaseEstimator
from sklearn.metrics import confusion_matrix, f1_score, make_scorer
from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV

from mlcycle.config.schema import Task, ThresholdConfig, ThresholdObjective

RESPONSE = "auto"  # predict_proba when the estimator has it (else decision_function)


@dataclass(frozen=True)
class Threshold:
    value: float  # positive when the positive class's score is >= value
    objective: str  # f1 | cost
    score: float  # the objective at ``value`` on the validation rows (cost: per row, lower is better)


def applies(config: ThresholdConfig, task: Task) -> bool:
    return task is Task.binary and config.objective is not ThresholdObjective.none


def negative_cost(y_true, y_pred, *, cost_fp: float, cost_fn: float, pos_label, neg_label) -> float:
    """Minus the mean cost per row of the false positives and false negatives (a scorer:
    greater is better)."""
    _, fp, fn, _ = confusion_matrix(y_true, y_pred, labels=[neg_label, pos_label]).ravel()
    return -(cost_fp * fp + cost_fn * fn) / len(y_true)


def scorer(config: ThresholdConfig, classes: tuple):
    """The objective as a scikit-learn scorer on labels (positive class: ``classes[1]``, the
    one ``predict_proba``'s second column scores)."""
    positive = classes[1]
    if config.objective is ThresholdObjective.cost:
        return make_scorer(negative_cost, cost_fp=config.cost_fp, cost_fn=config.cost_fn, pos_label=positive,
                           neg_label=classes[0])
    return make_scorer(f1_score, pos_label=positive, zero_division=0)


def choose(fitted, X_valid, y_valid, config: ThresholdConfig, classes: tuple) -> Threshold:
    """The threshold that scores best on the validation rows for ``fitted`` (a classifier,
    e.g. the whole Pipeline, already fitted on other rows)."""
    tuned = TunedThresholdClassifierCV(fitted, scoring=scorer(config, classes), response_method=RESPONSE,
                                       cv="prefit", refit=False, thresholds=200)
    tuned.fit(X_valid, y_valid)
    best = float(tuned.best_score_)
    return Threshold(float(tuned.best_threshold_), config.objective.value,
                     -best if config.objective is ThresholdObjective.cost else best)


def at_threshold(estimator: BaseEstimator, threshold: Threshold) -> FixedThresholdClassifier:
    """``estimator`` (unfitted) predicting at ``threshold``: the Pipeline's ``model`` step."""
    return FixedThresholdClassifier(estimator, threshold=threshold.value, response_method=RESPONSE)


def threshold_of(model) -> float | None:
    """The decision threshold inside a fitted Pipeline (or estimator), None when it has none."""
    step = model.steps[-1][1] if hasattr(model, "steps") else model
    return float(step.threshold) if isinstance(step, FixedThresholdClassifier) else None
