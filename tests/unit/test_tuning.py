from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from mlcycle.config import EstimatorSpec, Task
from mlcycle.modeling import prepare_folds
from mlcycle.tuning import run_study, suggest

SPACE = {
    "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
    "max_iter": {"type": "int", "low": 50, "high": 200},
    "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
}


def test_suggest_draws_each_kind_within_bounds():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = suggest(trial, SPACE)
        assert 0.01 <= params["C"] <= 10.0
        assert isinstance(params["max_iter"], int) and 50 <= params["max_iter"] <= 200
        assert params["class_weight"] in (None, "balanced")
        study.tell(trial, 0.0)


@pytest.fixture(scope="module")
def folds():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=list("abc"))
    y = pd.Series((X["a"] + 0.5 * rng.normal(size=120) > 0).astype(int))
    return prepare_folds(StandardScaler().set_output(transform="pandas"), X, y, StratifiedKFold(3, shuffle=True, random_state=0))


def test_study_reports_every_trial_and_is_seeded(folds):
    spec = EstimatorSpec(estimator="sklearn.linear_model.LogisticRegression", params={}, search_space=SPACE)
    seen = []
    first = run_study(spec, folds, "roc_auc", Task.binary, (0, 1), n_trials=4, timeout=None, sampler="tpe", seed=1, on_trial=seen.append)
    assert [t.number for t in seen] == [0, 1, 2, 3]
    assert all(t.state == "COMPLETE" and len(t.fold_scores) == 3 for t in seen)
    assert first.best_value == pytest.approx(max(t.value for t in seen))
    assert first.best_value == pytest.approx(np.mean(next(t for t in seen if t.value == first.best_value).fold_scores))
    again = run_study(spec, folds, "roc_auc", Task.binary, (0, 1), n_trials=4, timeout=None, sampler="tpe", seed=1)
    assert again.best_params == first.best_params


def test_failing_trials_are_counted_and_all_failing_is_an_error(folds):
    bad = EstimatorSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": -1}, search_space={"C": SPACE["C"]})
    seen = []
    with pytest.raises(RuntimeError, match="all 2 tuning trials failed; first error: .*max_iter"):
        run_study(bad, folds, "roc_auc", Task.binary, (0, 1), n_trials=2, timeout=None, sampler="random", seed=0, on_trial=seen.append)
    assert [t.state for t in seen] == ["FAIL", "FAIL"]
    assert all("max_iter" in t.error for t in seen)
