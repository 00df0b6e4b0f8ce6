"""model=auto's search (core/tuning/space.py) on real Optuna studies: a family first, then
that family's own parameters; each family tried once first; pruning across families; the
best per family; the best configuration back as (family, spec, estimator params)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from mlcycle.config.schema import EstimatorSpec
from mlcycle.core import tuning
from mlcycle.core.modeling import FAMILY_PARAM, build_estimator, configuration
from tests.unit.test_tuning_core import LOGREG, small_objective

KNN = EstimatorSpec(
    estimator="sklearn.neighbors.KNeighborsClassifier",
    params={},
    search_space={"n_neighbors": {"type": "int", "low": 1, "high": 60, "log": True}},
)
TREE = EstimatorSpec(
    estimator="sklearn.tree.DecisionTreeClassifier",
    params={},
    search_space={"max_depth": {"type": "int", "low": 1, "high": 8}},
)
FAMILIES = {"logreg": LOGREG, "knn": KNN, "tree": TREE}


def objective_over(families: dict[str, EstimatorSpec], n_folds: int = 3) -> tuning.Objective:
    one = small_objective(n_folds=n_folds)
    return tuning.Objective(families, one.folds, one.metric, one.task, one.classes, one.seed)


def test_each_family_is_tried_first_then_its_own_parameters_are_drawn():
    seen = []
    search = tuning.Search.of(study_name="families", n_trials=9, sampler="tpe", seed=1)
    result = tuning.optimize(objective_over(FAMILIES), search, on_trial=seen.append)
    assert result.counts.complete == 9
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.params[FAMILY_PARAM] for t in trials[:3]] == ["logreg", "knn", "tree"]  # enqueued, in config order
    for trial, heard in zip(trials, sorted(seen, key=lambda r: r.number), strict=True):
        family = trial.params[FAMILY_PARAM]
        assert heard.family == family
        own = {k for k in trial.params if k != FAMILY_PARAM}
        assert own == {f"{family}.{name}" for name in FAMILIES[family].search_space}

    name, spec, params = configuration(FAMILIES, result.best_params)
    assert name == result.best_params[FAMILY_PARAM] and spec is FAMILIES[name]
    assert set(params) == set(spec.search_space)
    build_estimator(spec, params, 0)  # the estimator takes them as they are

    _, importances = tuning.study_figures(result.study, 0)  # no trial holds every family's parameters
    assert "family" in importances

    per_family = tuning.best_by_family(result.study, FAMILIES)
    assert sum(f["trials"] for f in per_family.values()) == 9
    assert max(f["best"] for f in per_family.values()) == result.best_value


def test_one_family_keeps_today_s_parameter_names():
    seen = []
    result = tuning.optimize(objective_over({"logreg": LOGREG}), tuning.Search.of(study_name="one", n_trials=2, seed=0),
                             on_trial=seen.append)
    assert set(result.best_params) == {"C", "class_weight"} and {r.family for r in seen} == {"logreg"}
    assert configuration({"logreg": LOGREG}, result.best_params) == ("logreg", LOGREG, result.best_params)


def test_pruning_compares_trials_across_families():
    seen = []
    search = tuning.Search.of(study_name="prune-families", n_trials=24, sampler="random", pruner="median",
                              pruner_startup_trials=3, seed=0)
    tuning.optimize(objective_over({"knn": KNN, "tree": TREE}, n_folds=4), search, on_trial=seen.append)
    pruned = [r for r in seen if r.state == "PRUNED"]
    assert pruned and all(1 <= r.pruned_step < 4 for r in pruned)
    assert {r.family for r in seen if r.state == "COMPLETE"} == {"knn", "tree"}


def test_a_resumed_study_is_not_enqueued_again(tmp_path):
    search = tuning.Search.of(study_name="resume", n_trials=2, seed=0, storage=f"sqlite:///{tmp_path / 's.db'}")
    tuning.optimize(objective_over(FAMILIES), search)
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 1  # the third family, queued
    tuning.optimize(objective_over(FAMILIES), search.using(n_trials=4))
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert len(study.trials) == 4 and [t.params[FAMILY_PARAM] for t in study.trials[:3]] == ["logreg", "knn", "tree"]


@pytest.mark.parametrize("sampler", ["random", "cmaes", "qmc"])
def test_other_samplers_take_the_conditional_space(sampler):
    search = tuning.Search.of(study_name=f"cond-{sampler}", n_trials=5, sampler=sampler, seed=2)
    result = tuning.optimize(objective_over(FAMILIES), search)
    assert result.counts.complete == 5
