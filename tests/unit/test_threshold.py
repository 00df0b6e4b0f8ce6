"""The decision threshold (core/threshold.py): chosen by scikit-learn on validation rows,
carried by the estimator step, probabilities untouched. Real scikit-learn, small data."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcycle.config.schema import Task, ThresholdConfig, ThresholdObjective
from mlcycle.core import threshold as thresholds
from mlcycle.errors import ConfigError
from mlcycle.tracking.flavor import load_skops


def imbalanced(n: int, seed: int, labels=(0, 1)):
    """About 15 % positives that a linear model ranks well but rarely gives 0.5."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.8 * rng.normal(size=n) > 1.4).astype(int)
    return X, np.asarray(labels)[y]


def fitted(X, y):
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, y)


@pytest.mark.parametrize("labels", [(0, 1), ("no", "yes")])
def test_f1_threshold_beats_the_default_rule_on_validation_and_is_carried_by_the_model_step(labels):
    X, y = imbalanced(1500, 0, labels)
    Xv, yv = imbalanced(600, 1, labels)
    on_train = fitted(X, y)
    config = ThresholdConfig()  # f1 by default
    chosen = thresholds.choose(on_train, Xv, yv, config, labels)
    assert 0.0 < chosen.value < 0.5 and chosen.objective == "f1"
    default_f1 = skm.f1_score(yv, on_train.predict(Xv), pos_label=labels[1])
    assert chosen.score > default_f1

    model = Pipeline([("scale", StandardScaler()),
                      ("model", thresholds.at_threshold(LogisticRegression(), chosen))]).fit(X, y)
    assert thresholds.threshold_of(model) == chosen.value
    proba = model.predict_proba(Xv)
    np.testing.assert_array_equal(proba, on_train.predict_proba(Xv))  # probabilities unchanged
    expected = np.where(proba[:, 1] >= chosen.value, labels[1], labels[0])
    np.testing.assert_array_equal(model.predict(Xv), expected)
    assert skm.recall_score(yv, model.predict(Xv), pos_label=labels[1]) > skm.recall_score(
        yv, on_train.predict(Xv), pos_label=labels[1])

    # the wrapper is in the one allowlist every load goes through
    again = load_skops(skops.io.dumps(model))
    np.testing.assert_array_equal(again.predict(Xv), expected)


def test_cost_objective_moves_the_threshold_with_the_cost_ratio():
    X, y = imbalanced(1500, 2)
    Xv, yv = imbalanced(600, 3)
    on_train = fitted(X, y)

    def cost(ratio):
        config = ThresholdConfig(objective=ThresholdObjective.cost, cost_fp=1.0, cost_fn=ratio)
        return thresholds.choose(on_train, Xv, yv, config, (0, 1))

    cheap_misses, dear_misses = cost(1.0), cost(10.0)
    assert dear_misses.value < cheap_misses.value  # missing a positive costs more: say positive sooner
    predicted = FixedThresholdClassifier(clone(on_train), threshold=dear_misses.value).fit(X, y).predict(Xv)
    tn, fp, fn, tp = skm.confusion_matrix(yv, predicted).ravel()
    assert dear_misses.score == pytest.approx((fp + 10.0 * fn) / len(yv))  # the mean cost per row


def test_applies_only_to_binary_tasks_unless_switched_off():
    assert thresholds.applies(ThresholdConfig(), Task.binary)
    assert not thresholds.applies(ThresholdConfig(objective=ThresholdObjective.none), Task.binary)
    assert not thresholds.applies(ThresholdConfig(), Task.multiclass)
    assert not thresholds.applies(ThresholdConfig(), Task.regression)
    assert thresholds.threshold_of(fitted(*imbalanced(200, 4))) is None


def test_a_cost_must_be_positive():
    with pytest.raises(ConfigError, match=r"^model.threshold.cost_fn must be positive, got 0"):
        ThresholdConfig(objective=ThresholdObjective.cost, cost_fn=0.0)
