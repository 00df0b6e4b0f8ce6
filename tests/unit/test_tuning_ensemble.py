"""Greedy ensemble selection (core/tuning/ensemble.py): a known answer on hand-made fold
predictions, ties and the single best kept; on a real study over three families the
selection is deterministic (in one thread or two), its single best is the study's best, and the soft vote
core.modeling builds scores on the folds exactly what the selection computed; the trials'
kept out-of-fold predictions spare the refits and give the same selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcycle.config.schema import EnsembleConfig, Task
from mlcycle.core import tuning
from mlcycle.core.modeling import (
    ENSEMBLE,
    best_family,
    build_estimator,
    build_model,
    configuration,
    iter_fold_scores,
)
from mlcycle.core.tuning.ensemble import (
    FamilyBests,
    best_trials,
    fold_predictions,
    greedy_selection,
)
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


def trial_result(number: int, value: float | None, family: str = "a", state: str = "COMPLETE") -> tuning.TrialResult:
    return tuning.TrialResult(number=number, params={}, value=value, state=state, fold_scores=(), error=None,
                              start_ms=0, end_ms=0, family=family, predictions=(np.full(2, float(number)),))


def test_family_bests_keeps_each_familys_best_trial_ties_to_the_lower_number():
    bests = FamilyBests(greater=True)
    for result in (trial_result(3, 0.8), trial_result(1, 0.8), trial_result(2, 0.7), trial_result(5, 0.9, state="PRUNED"),
                   trial_result(4, float("nan")), trial_result(6, 0.6, family="b"), trial_result(7, 0.65, family="b")):
        bests.add(result)
    assert sorted(bests.by_trial()) == [1, 7]
    assert bests.by_trial()[1][0].tolist() == [1.0, 1.0]
    lower = FamilyBests(greater=False)  # rmse: the smaller wins
    for result in (trial_result(1, 2.0), trial_result(2, 1.5), trial_result(3, 1.7)):
        lower.add(result)
    assert list(lower.by_trial()) == [2]


@pytest.mark.parametrize("parallel", ["process", "thread"])
def test_predictions_kept_by_the_trials_give_the_selection_a_refit_would(parallel):
    """The trials (in two worker processes, or two threads) keep their out-of-fold
    predictions; the selection over them needs no refit and finds what refitting finds."""
    objective = objective_over(FAMILIES, n_folds=3)
    search = tuning.Search.of(study_name=f"kept-{parallel}", n_trials=9, sampler="tpe", seed=1)
    result = tuning.optimize(objective, search, n_jobs=2, parallel=parallel, keep_predictions=True)
    best = best_trials(result.study, objective)
    assert sorted(result.predictions) == sorted(t.number for t in best.values())  # every family's best, no other
    config = EnsembleConfig(enabled=True, rounds=8)
    kept = tuning.select_ensemble(objective, result.study, config, known=result.predictions)
    refit = tuning.select_ensemble(objective, result.study, config)
    assert kept.refitted == () and refit.refitted == tuple(best)
    assert kept.selection.weights == refit.selection.weights and kept.params == refit.params
    assert kept.selection.score == pytest.approx(refit.selection.score, abs=1e-12)
    refitted = fold_predictions({name: build_estimator(*configuration(FAMILIES, t.params)[1:], objective.seed)
                                 for name, t in best.items()}, objective)
    for name, trial in best.items():
        for mine, theirs in zip(result.predictions[trial.number], refitted[name], strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-12)
    # without keep_predictions nothing is kept (a single-family study has no use for them)
    assert tuning.optimize(objective, search.using(study_name="none-kept", n_trials=3)).predictions == {}
