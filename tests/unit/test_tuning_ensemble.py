"""Greedy ensemble selection (core/tuning/ensemble.py): a known answer on hand-made fold
predictions, ties and the single best kept; on a real study over three families the
selection is deterministic (in one thread or two), its single best is the study's best, and the soft vote
core.modeling builds scores on the folds exactly what the selection computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcycle.config.schema import EnsembleConfig, Task
from mlcycle.core import tuning
from mlcycle.core.modeling import ENSEMBLE, best_family, build_model, iter_fold_scores
from mlcycle.core.tuning.ensemble import greedy_selection
from tests.unit.test_tuning_families import FAMILIES, objective_over

Y = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0, 7.0])]  # two folds


def rmse(y, p):
    return float(np.sqrt(np.mean((y - p) ** 2)))


def offset(error: float) -> list[np.ndarray]:
    return [y + error for y in Y]


def test_greedy_selection_finds_the_weighted_average_that_cancels_the_errors():
    # errors +1, -2 and +3: 2 x a + 1 x b is exact; a alone is the best single (rmse 1)
    predictions = {"a": offset(1.0), "b": offset(-2.0), "c": offset(3.0)}
    found = greedy_selection(predictions, Y, rmse, greater=False, rounds=10)
    assert found.weights == {"a": 2, "b": 1}
    assert found.score == pytest.approx(0.0, abs=1e-12)
    assert (found.single, found.single_score) == ("a", 1.0)
    assert found.better
    # one round: the best single alone, never kept as an ensemble
    one = greedy_selection(predictions, Y, rmse, greater=False, rounds=1)
    assert one.weights == {"a": 1} and one.score == 1.0 and not one.better
    # greater is better: the same with the negated score
    negated = greedy_selection(predictions, Y, lambda y, p: -rmse(y, p), greater=True, rounds=10)
    assert negated.weights == {"a": 2, "b": 1} and negated.better


def test_the_single_best_stays_when_no_average_beats_it():
    predictions = {"exact": offset(0.0), "off": offset(1.0)}
    found = greedy_selection(predictions, Y, rmse, greater=False, rounds=5)
    assert found.weights == {"exact": 1} and found.single == "exact" and not found.better


def test_ties_go_to_the_earlier_candidate():
    predictions = {"first": offset(1.0), "second": offset(1.0)}
    found = greedy_selection(predictions, Y, rmse, greater=False, rounds=3)
    assert found.single == "first" and found.weights == {"first": 1} and not found.better


def test_a_real_study_ensemble_is_deterministic_and_the_vote_scores_what_was_selected():
    objective = objective_over(FAMILIES, n_folds=3)
    result = tuning.optimize(objective, tuning.Search.of(study_name="ens", n_trials=9, sampler="tpe", seed=1))
    config = EnsembleConfig(enabled=True, rounds=8)
    outcome = tuning.select_ensemble(objective, result.study, config)
    again = tuning.select_ensemble(objective, result.study, config, n_jobs=2)  # fits in 2 threads: same answer
    assert outcome.selection == again.selection and outcome.params == again.params
    assert set(outcome.members) == set(FAMILIES)
    # the best single on the same folds and metric is the study's best trial
    assert outcome.selection.single_score == pytest.approx(result.best_value, abs=1e-12)
    assert outcome.members[outcome.selection.single] == result.best_params

    params, score = tuning.chosen(result.best_params, result.best_value, outcome)
    assert outcome.chosen and len(outcome.selection.weights) >= 2  # on these folds, the vote wins
    assert ENSEMBLE in params and score == outcome.selection.score > result.best_value
    # the soft vote built from the cached parameters (a JSON round trip) has the selection's CV score
    ensemble = json.loads(json.dumps(outcome.params))
    model = build_model(FAMILIES, ensemble, Task.binary, objective.seed)
    assert model.family == ENSEMBLE == best_family(FAMILIES, ensemble)
    assert type(model.estimator).__name__ == "VotingClassifier" and model.estimator.voting == "soft"
    cv = float(np.mean(list(iter_fold_scores(model.estimator, list(objective.folds), objective.metric, Task.binary, (0, 1)))))
    assert cv == pytest.approx(outcome.selection.score, abs=1e-12)


def test_off_or_one_family_means_no_selection():
    objective = objective_over(FAMILIES, n_folds=3)
    result = tuning.optimize(objective, tuning.Search.of(study_name="off", n_trials=3, seed=0))
    assert tuning.select_ensemble(objective, result.study, EnsembleConfig(enabled=False)) is None
    one = objective_over({"logreg": FAMILIES["logreg"]})
    single = tuning.optimize(one, tuning.Search.of(study_name="single", n_trials=2, seed=0))
    assert tuning.select_ensemble(one, single.study, EnsembleConfig(enabled=True)) is None
