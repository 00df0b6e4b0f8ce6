from __future__ import annotations

import optuna

from mlcycle.core.tuning import suggest

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
