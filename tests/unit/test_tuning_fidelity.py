"""Cheap starts and low-fidelity trials (core/tuning/space.py, core/tuning/fidelity.py) on
real Optuna studies and scikit-learn estimators: each family's first trial at its declared
start point; trials first scored on 1/9 and 1/3 of each fold's rows, Optuna's successive
halving promoting the best; the same rungs in spawned processes and on a remote worker."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from optuna.trial import TrialState
from sklearn.datasets import make_classification

from mlcycle.config.schema import Task
from mlcycle.core import tuning
from mlcycle.core.modeling import FAMILY_PARAM, Fold
from mlcycle.core.tuning.fidelity import MIN_ROWS, low_fidelity_folds, subsample
from tests.unit.test_tuning_core import LOGREG
from tests.unit.test_tuning_families import KNN, TREE, objective_over

STARTS = {"logreg": replace(LOGREG, start={"C": 1.0, "class_weight": "balanced"}),
          "knn": replace(KNN, start={"n_neighbors": 15}), "tree": TREE}  # tree: no start declared


def folds_of(n_rows: int, n_folds: int = 3, weights=None) -> tuple[Fold, ...]:
    X, y = make_classification(n_samples=n_rows, n_features=8, n_informative=4, weights=weights, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
    parts = np.arange(len(y)) % n_folds
    return tuple(Fold(X[parts != k].reset_index(drop=True), y[parts != k], X[parts == k].reset_index(drop=True), y[parts == k])
                 for k in range(n_folds))


def big_objective(families, fidelity: str = "subsample") -> tuning.Objective:
    """2,700 rows: 1,800 training rows per fold, so both rungs (200 and 600 rows) are kept."""
    return tuning.Objective(families, folds_of(2700), "roc_auc", Task.binary, (0, 1), 0, fidelity)


def test_each_family_starts_at_its_declared_point_unless_cheap_start_is_off():
    search = tuning.Search.of(study_name="starts", n_trials=3, sampler="random", seed=1)
    first = tuning.optimize(objective_over(STARTS), search).study.get_trials(states=(TrialState.COMPLETE,))
    assert first[0].params == {FAMILY_PARAM: "logreg", "logreg.C": 1.0, "logreg.class_weight": "balanced"}
    assert first[1].params == {FAMILY_PARAM: "knn", "knn.n_neighbors": 15}
    assert first[2].params[FAMILY_PARAM] == "tree"  # drawn by the sampler

    drawn = tuning.optimize(objective_over(STARTS), search.using(cheap_start=False)).study.trials
    assert [t.params[FAMILY_PARAM] for t in drawn] == ["logreg", "knn", "tree"]  # still one each, in order
    assert drawn[0].params["logreg.C"] != 1.0 and drawn[1].params["knn.n_neighbors"] != 15


def test_a_narrowed_search_space_moves_the_start_into_it_instead_of_refusing_the_run():
    """A user narrowing a family's space (e.g. max_depth to [1, 1]) is not refused because the
    declared start lies outside it: numbers are clipped, a choice no longer offered is drawn."""
    narrowed = replace(STARTS["logreg"], search_space={
        "C": {"type": "float", "low": 2.0, "high": 5.0, "log": True},
        "class_weight": {"type": "categorical", "choices": [None]},
    })
    assert tuning.start_point(narrowed) == {"C": 2.0}
    knn = replace(STARTS["knn"], search_space={"n_neighbors": {"type": "int", "low": 1, "high": 9}})
    assert tuning.start_point(knn) == {"n_neighbors": 9}
    search = tuning.Search.of(study_name="narrowed", n_trials=2, sampler="random", seed=1)
    first = tuning.optimize(objective_over({"logreg": narrowed, "knn": knn}), search).study.get_trials(states=(TrialState.COMPLETE,))
    assert first[0].params["logreg.C"] == 2.0 and first[0].params["logreg.class_weight"] is None
    assert first[1].params == {FAMILY_PARAM: "knn", "knn.n_neighbors": 9}


def test_subsamples_keep_each_class_share_and_are_drawn_once():
    fold = folds_of(2700, weights=[0.9])[0]  # 10 % positives
    part = subsample(fold, 1 / 9, Task.binary, seed=3)
    assert len(part.y_train) == pytest.approx(len(fold.y_train) / 9, abs=2)
    assert part.y_train.mean() == pytest.approx(fold.y_train.mean(), abs=0.01)
    assert part.X_valid is fold.X_valid  # scored on all the validation rows
    again = subsample(fold, 1 / 9, Task.binary, seed=3)
    pd.testing.assert_frame_equal(part.X_train, again.X_train)
    rare = Fold(fold.X_train, np.r_[np.ones(1), np.zeros(len(fold.y_train) - 1)], fold.X_valid, fold.y_valid)
    assert set(subsample(rare, 1 / 9, Task.binary, seed=0).y_train) == {0, 1}  # a class of one row kept

    rungs = low_fidelity_folds(folds_of(2700), "subsample", Task.binary, 0)
    assert [(step, [len(f.y_train) for f in folds]) for step, folds in rungs] == [(1, [200] * 3), (3, [600] * 3)]
    assert low_fidelity_folds(folds_of(2700), "none", Task.binary, 0) == ()
    # under MIN_ROWS a rung says little: 900 rows -> 600 per fold -> only the 1/3 rung (200 rows)
    assert [step for step, _ in low_fidelity_folds(folds_of(900), "subsample", Task.binary, 0)] == [3]
    assert low_fidelity_folds(folds_of(240), "subsample", Task.binary, 0) == () and MIN_ROWS == 200


def test_successive_halving_promotes_only_the_best_low_fidelity_trials():
    seen = []
    search = tuning.Search.of(study_name="halving", n_trials=30, sampler="random", pruner="successive_halving",
                              fidelity="subsample", seed=0)
    result = tuning.optimize(big_objective({"logreg": LOGREG, "knn": KNN, "tree": TREE}), search, on_trial=seen.append)
    complete = [r for r in seen if r.state == "COMPLETE"]
    pruned = [r for r in seen if r.state == "PRUNED"]
    assert len(complete) + len(pruned) == 30 and not [r for r in seen if r.state == "FAIL"]
    assert 1 <= len(complete) <= 15 and len(pruned) >= 15  # most stop on a subsample
    for r in complete:
        assert [step for step, _ in r.rung_scores] == [1, 3] and len(r.fold_scores) == 3
        assert r.value == pytest.approx(np.mean(r.fold_scores))
    for r in pruned:  # stopped at a rung: never fitted on all the rows
        assert r.fold_scores == () and r.pruned_step is None and [s for s, _ in r.rung_scores] in ([1], [1, 3])
    # promoted = better at 1/9 of the rows: the pruner compared what the trials reported
    first = {r.number: dict(r.rung_scores)[1] for r in seen}
    promoted = [first[r.number] for r in seen if len(r.rung_scores) > 1]
    stopped = [first[r.number] for r in pruned if len(r.rung_scores) == 1]
    assert np.median(promoted) > np.median(stopped)
    steps = {t.number: sorted(t.intermediate_values) for t in result.study.trials}
    assert all(s in ([1], [1, 3]) for s in steps.values())  # steps 1 and 3 of 9: the pruner's rungs
    assert result.best_value == max(r.value for r in complete)


def test_a_configuration_a_subsample_cannot_fit_is_not_failed_for_it():
    """k nearest neighbours with more neighbours than a 1/9 subsample has rows: that rung is
    skipped, the trial goes on to the next."""
    many = replace(KNN, search_space={"n_neighbors": {"type": "int", "low": 300, "high": 400}})
    seen = []
    search = tuning.Search.of(study_name="too-few", n_trials=4, pruner="successive_halving", fidelity="subsample", seed=0)
    tuning.optimize(big_objective({"knn": many}), search, on_trial=seen.append)
    assert {r.state for r in seen} <= {"COMPLETE", "PRUNED"} and all(r.error is None for r in seen)
    assert all([s for s, _ in r.rung_scores] == [3] for r in seen)  # 200 rows < 300 neighbours: step 1 skipped


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_other_optuna_pruners_act_on_the_rungs(pruner):
    seen = []
    search = tuning.Search.of(study_name=f"rungs-{pruner}", n_trials=16, sampler="random", pruner=pruner,
                              pruner_startup_trials=3, fidelity="subsample", seed=0)
    tuning.optimize(big_objective({"knn": KNN, "tree": TREE}), search, on_trial=seen.append)
    assert any(r.state == "PRUNED" and r.fold_scores == () for r in seen)


def test_spawned_worker_processes_score_the_same_rungs():
    seen = []
    search = tuning.Search.of(study_name="rungs-processes", n_trials=10, sampler="random", pruner="successive_halving",
                              fidelity="subsample", seed=0)
    tuning.optimize(big_objective({"logreg": LOGREG, "tree": TREE}), search, n_jobs=2, parallel="process",
                    on_trial=seen.append)
    assert len({r.worker for r in seen}) == 2 and len(seen) == 10
    assert all(r.rung_scores and r.rung_scores[0][0] == 1 for r in seen)
    assert any(r.state == "PRUNED" for r in seen) and any(r.state == "COMPLETE" for r in seen)


def test_a_remote_worker_rebuilds_the_rungs_from_the_description(tmp_path):
    from mlcycle.config.schema import PreprocessConfig
    from tests.conftest import typed_sessions

    _, schema, typed, derived, plan = typed_sessions(2400)
    rows = typed[[*schema.features, schema.target]]

    def rebuilt(fidelity: str) -> tuning.Objective:
        description = tuning.describe_objective(schema, plan, PreprocessConfig(), derived, {"logreg": LOGREG}, "roc_auc",
                                                3, 5, False, fidelity)
        return tuning.objective_from_description(json.loads(json.dumps(description)), rows)

    here, there = rebuilt("subsample"), rebuilt("subsample")
    assert there.fidelity == "subsample" and there.max_step == 9 and [s for s, _ in there.rungs] == [3]  # 1,600 rows/fold: 1/9 < MIN_ROWS
    for (_, mine), (_, theirs) in zip(here.rungs, there.rungs, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            pd.testing.assert_frame_equal(a.X_train, b.X_train)
    assert rebuilt("none").rungs == () and rebuilt("none").max_step == 3
    old = tuning.describe_objective(schema, plan, PreprocessConfig(), derived, {"logreg": LOGREG}, "roc_auc", 3, 5, False)
    old.pop("fidelity")  # described before tune.fidelity existed
    assert tuning.objective_from_description(old, rows).fidelity == "none"
