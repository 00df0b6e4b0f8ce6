"""tuning.py on real Optuna studies (in memory, sqlite and journal files): samplers with
categorical parameters, pruners, the study target across resumes, dead trials, figures,
and the objective a remote worker rebuilds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlcycle.config.schema import EstimatorSpec, Task
from mlcycle.core import tuning
from mlcycle.core.liveness import owner_token
from mlcycle.core.modeling import Fold
from mlcycle.core.tuning.loop import Quota, work
from mlcycle.tracking.study import trial_record

LOGREG = EstimatorSpec(
    estimator="sklearn.linear_model.LogisticRegression",
    params={"max_iter": 500},
    search_space={
        "C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    },
)


def small_objective(spec: EstimatorSpec = LOGREG, n_folds: int = 3) -> tuning.Objective:
    X, y = make_classification(n_samples=240, n_features=6, n_informative=3, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    parts = np.arange(len(y)) % n_folds
    folds = tuple(
        Fold(X[parts != k].reset_index(drop=True), y[parts != k], X[parts == k].reset_index(drop=True), y[parts == k])
        for k in range(n_folds)
    )
    return tuning.Objective({"logreg": spec}, folds, "roc_auc", Task.binary, (0, 1), seed=0)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "qmc"])
def test_every_sampler_handles_categorical_and_numeric_parameters(sampler):
    search = tuning.Search.of(study_name=f"s-{sampler}", n_trials=6, sampler=sampler, seed=3)
    result = tuning.optimize(small_objective(), search)
    assert result.counts.complete == 6 and result.n_run == 6
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert {t.params["class_weight"] for t in trials} <= {None, "balanced"}
    assert all(1e-3 <= t.params["C"] <= 10.0 for t in trials)


def test_seeded_sampler_repeats_the_same_trials():
    search = tuning.Search.of(study_name="repeat", n_trials=5, sampler="tpe", seed=11)
    first = tuning.optimize(small_objective(), search)
    second = tuning.optimize(small_objective(), search)
    assert [t.params for t in first.study.trials] == [t.params for t in second.study.trials]
    assert first.best_value == second.best_value


@pytest.mark.parametrize("name", ["none", "median", "successive_halving", "hyperband"])
def test_pruners_build(name):
    pruner = tuning.make_pruner(name, n_steps=5, startup_trials=2)
    assert isinstance(pruner, optuna.pruners.BasePruner)


def test_unknown_sampler_and_pruner_are_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        tuning.make_sampler("grid", 0)
    with pytest.raises(ValueError, match="unknown pruner"):
        tuning.make_pruner("patient", 3, 1)


def test_study_name_follows_the_search_definition():
    a = tuning.study_name("exp-model", {"space": {"C": [1, 2]}, "seed": 1})
    assert a == tuning.study_name("exp-model", {"seed": 1, "space": {"C": [1, 2]}})  # key order
    assert a != tuning.study_name("exp-model", {"space": {"C": [1, 3]}, "seed": 1})
    assert a.startswith("exp-model-") and len(a) == len("exp-model-") + 12


def test_resume_counts_finished_trials_toward_the_target(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = tuning.Search.of(study_name="resume", storage=storage, n_trials=3, seed=1)
    first = tuning.optimize(small_objective(), search)
    assert (first.n_before, first.n_run, first.counts.done) == (0, 3, 3)
    again = tuning.optimize(small_objective(), search)  # target reached: nothing to do
    assert (again.n_before, again.n_run, again.counts.done) == (3, 0, 3)
    more = tuning.optimize(small_objective(), search.using(n_trials=5))
    assert (more.n_before, more.n_run, more.counts.done) == (3, 2, 5)
    assert [t.number for t in more.study.trials] == [0, 1, 2, 3, 4]


def test_a_trial_left_running_by_a_dead_process_is_failed_and_retried(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = tuning.Search.of(study_name="crashed", storage=storage, n_trials=3, seed=1, max_retry=1)
    objective = small_objective()
    study = tuning.load_study(search, objective, create=True)
    # what a SIGKILLed worker leaves: a RUNNING trial with its owner's token and params
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    token = owner_token().rsplit(":", 2)[0] + f":{dead.stdout.strip()}:1"
    orphan = study.ask({"C": optuna.distributions.FloatDistribution(1e-3, 10.0, log=True)})
    orphan.set_user_attr(tuning.OWNER_ATTR, token)
    # ... and one of a live process (this one): must be left alone
    live = study.ask()
    live.set_user_attr(tuning.OWNER_ATTR, owner_token())

    assert tuning.reap_dead_trials(study, max_retry=1) == [orphan.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[live.number].state == TrialState.RUNNING
    retry = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == trials[orphan.number].params
    counted = tuning.counts(study)
    assert (counted.done, counted.lost, counted.running, counted.waiting) == (0, 1, 1, 1)

    study.tell(live.number, state=TrialState.FAIL)  # stands in for the live one finishing
    result = tuning.optimize(objective, search)
    ran = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert len(ran) == 3  # the lost trials do not count toward n_trials
    assert ran[0].params["C"] == trials[orphan.number].params["C"]  # the retry ran first


def test_a_trial_killed_before_its_worker_named_itself_is_failed(tmp_path):
    """What CI caught: SIGKILL between Optuna creating a trial and the worker writing its
    owner (and before any heartbeat) left it RUNNING for ever."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="unnamed")
    fresh = study.ask()  # no owner, no params, no heartbeat
    old = optuna.trial.create_trial(state=TrialState.RUNNING)
    old.datetime_start = datetime.now() - timedelta(seconds=tuning.OWNERLESS_GRACE_S + 60)
    study.add_trial(old)
    old_number = study.trials[-1].number
    # shared storage: another machine may be about to name the fresh one; the old one is dead
    assert tuning.reap_dead_trials(study, max_retry=0, shared=True) == [old_number]
    assert study.trials[fresh.number].state == TrialState.RUNNING
    # a storage of this invocation's own: nobody else can be running a trial in it
    assert tuning.reap_dead_trials(study, max_retry=0, shared=False) == [fresh.number]
    assert {t.state for t in study.trials} == {TrialState.FAIL}


def test_objective_errors_count_as_failed_and_all_failed_raises():
    bad = EstimatorSpec(estimator=LOGREG.estimator, params={"max_iter": -1}, search_space=LOGREG.search_space)
    seen = []
    with pytest.raises(RuntimeError, match="all 2 tuning trials failed; first error: .*max_iter"):
        tuning.optimize(small_objective(bad), tuning.Search.of(study_name="bad", n_trials=2), on_trial=seen.append)
    assert [r.state for r in seen] == ["FAIL", "FAIL"]
    assert all("max_iter" in r.error for r in seen)


def test_threads_reach_the_target_exactly_and_report_every_trial():
    seen = []
    search = tuning.Search.of(study_name="threads", n_trials=7, seed=2)
    result = tuning.optimize(small_objective(), search, n_jobs=3, parallel="thread", on_trial=seen.append)
    assert result.n_run == 7 and len(result.study.trials) == 7
    assert sorted(r.number for r in seen) == list(range(7))
    assert all(len(r.fold_scores) == 3 for r in seen)



# ~0.5 s per trial: the study outlasts the few seconds a spawned worker takes to start
FOREST = EstimatorSpec(
    estimator="sklearn.ensemble.RandomForestClassifier",
    params={"n_estimators": 150, "n_jobs": 1},
    search_space={"max_depth": {"type": "int", "low": 2, "high": 8}},
)


@pytest.mark.parametrize("parallel", ["thread", "process"])
def test_each_trial_start_reaches_the_caller_before_its_end(parallel):
    """What the progress bar shows as running: every trial's start, from trial threads and
    from spawned worker processes alike (their starts cross the queue), before its end, with
    the trial's own start time."""
    events, workers = [], set()

    def ended(result):
        events.append(("end", result.number, result.start_ms))
        workers.add(result.worker)

    search = tuning.Search.of(study_name=f"starts-{parallel}", n_trials=10, seed=4)
    objective = small_objective(FOREST if parallel == "process" else LOGREG)
    tuning.optimize(objective, search, n_jobs=2, parallel=parallel, on_trial=ended,
                    on_trial_start=lambda s: events.append(("start", s.number, int(s.at * 1000))))
    if parallel == "process":
        assert len(workers) == 2  # this process and the spawned worker both ran trials
    starts = {n: at for kind, n, at in events if kind == "start"}
    ends = {n: at for kind, n, at in events if kind == "end"}
    assert sorted(starts) == sorted(ends) == list(range(10))
    assert starts == ends  # the start time of the trial itself
    for number in range(10):
        assert events.index(("start", number, starts[number])) < events.index(("end", number, ends[number]))

class OpenMPProbe(LogisticRegression):
    """Logistic regression that records the OpenMP thread count its fit would get."""

    seen: list[int] = []

    def fit(self, X, y, sample_weight=None):
        from threadpoolctl import threadpool_info

        OpenMPProbe.seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp")
        return super().fit(X, y, sample_weight)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to split between 2 trial threads")
def test_trial_threads_share_the_cores_through_openmp():
    """OpenMP's thread count is per calling thread; each trial thread must get its share,
    not every core (two HGB trials at 2 OpenMP threads each halve the throughput)."""
    OpenMPProbe.seen.clear()
    spec = replace(LOGREG, estimator=f"{__name__}.OpenMPProbe")
    search = tuning.Search.of(study_name="openmp", n_trials=4, seed=1)
    tuning.optimize(small_objective(spec), search, n_jobs=2, parallel="thread")
    share = len(os.sched_getaffinity(0)) // 2
    assert OpenMPProbe.seen and set(OpenMPProbe.seen) == {share}


class BLASProbe(LogisticRegression):
    """Logistic regression that records the BLAS and OpenMP thread counts its fit gets."""

    seen: list[tuple[str, int]] = []

    def fit(self, X, y, sample_weight=None):
        from threadpoolctl import threadpool_info

        BLASProbe.seen.extend((p["user_api"], p["num_threads"]) for p in threadpool_info())
        return super().fit(X, y, sample_weight)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to tell a cap from the default")
@pytest.mark.parametrize(("threads_per_fit", "blas_threads"), [(1, 1), (None, 1), (None, None)])
def test_trials_get_the_configured_threads(threads_per_fit, blas_threads):
    """threads_per_fit (default 1 in the config) caps OpenMP and BLAS inside trials: one
    thread never spins against other work. null leaves OpenMP with every core, and
    tune.blas_threads caps BLAS alone (null: BLAS left alone too). Outside the study the
    limits are restored."""
    from threadpoolctl import threadpool_info

    before = {(p["user_api"], p["num_threads"]) for p in threadpool_info()}
    assert ("blas", 1) not in before and ("openmp", 1) not in before  # else a cap could not be told apart
    BLASProbe.seen.clear()
    spec = replace(LOGREG, estimator=f"{__name__}.BLASProbe")
    search = tuning.Search.of(study_name="blas", n_trials=2, seed=1, blas_threads=blas_threads)
    tuning.optimize(small_objective(spec), search, threads_per_fit=threads_per_fit)
    cores = len(os.sched_getaffinity(0))
    blas = {n for api, n in BLASProbe.seen if api == "blas"}
    openmp = {n for api, n in BLASProbe.seen if api == "openmp"}
    default_blas = {n for api, n in before if api == "blas"}
    assert blas == ({1} if threads_per_fit == 1 or blas_threads == 1 else default_blas)
    assert openmp == ({1} if threads_per_fit == 1 else {cores})
    assert {(p["user_api"], p["num_threads"]) for p in threadpool_info()} == before


def test_auto_parallelism_starts_workers_only_when_they_pay_back():
    """tune.n_jobs=null: the first trial's duration decides (core.tuning.optimize)."""
    from mlcycle.core.tuning.optimize import PAYBACK, WORKER_START_SECONDS, jobs_worth_starting

    pays_back = WORKER_START_SECONDS * PAYBACK
    assert jobs_worth_starting(0.1, 19, cores=2) == 1  # 1.9 s of trials left: start-up would dominate
    assert jobs_worth_starting(pays_back / 19 * 1.01, 19, cores=2) == 2
    assert jobs_worth_starting(pays_back, 19, cores=8) == 8
    assert jobs_worth_starting(pays_back, 3, cores=8) == 3  # no more workers than trials left
    assert jobs_worth_starting(pays_back, 1, cores=8) == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="auto stays at one job on one core")
def test_auto_parallelism_runs_the_rest_in_processes_when_trials_are_slow(monkeypatch):
    """With a start-up cost made negligible, auto runs the trials left after the first with
    one process per core; every trial is run once and reported."""
    import importlib

    monkeypatch.setattr(importlib.import_module("mlcycle.core.tuning.optimize"), "WORKER_START_SECONDS", 1e-6)
    seen = []
    search = tuning.Search.of(study_name="auto", n_trials=6, seed=3)
    result = tuning.optimize(small_objective(), search, n_jobs=None, on_trial=seen.append, threads_per_fit=1)
    assert result.n_jobs == min(len(os.sched_getaffinity(0)), 5)
    assert sorted(r.number for r in seen) == list(range(6)) and result.n_run == 6
    # the workers' share depends on how fast they start (tests/integration/test_tuning_parallel.py
    # checks trials spread over processes); here: each trial once, from at most that many
    assert 1 <= len({r.worker for r in seen}) <= result.n_jobs


def test_auto_parallelism_keeps_fast_trials_in_this_process():
    seen = []
    result = tuning.optimize(small_objective(), tuning.Search.of(study_name="fast", n_trials=4, seed=3), n_jobs=None,
                             on_trial=seen.append)
    assert result.n_jobs == 1 and len({r.worker for r in seen}) == 1 and result.n_run == 4


def test_pruned_trials_report_the_folds_they_scored():
    # a search space with a hopeless region: very few neighbours overfit
    spec = EstimatorSpec(
        estimator="sklearn.neighbors.KNeighborsClassifier",
        params={},
        search_space={"n_neighbors": {"type": "int", "low": 1, "high": 60, "log": True}},
    )
    seen = []
    search = tuning.Search.of(study_name="prune", n_trials=20, sampler="random", pruner="median", pruner_startup_trials=3, seed=0)
    result = tuning.optimize(small_objective(spec, n_folds=4), search, on_trial=seen.append)
    pruned = [r for r in seen if r.state == "PRUNED"]
    assert pruned and result.counts.pruned == len(pruned)
    assert all(r.pruned_step == len(r.fold_scores) and 1 <= r.pruned_step < 4 for r in pruned)
    assert all(len(r.fold_scores) == 4 for r in seen if r.state == "COMPLETE")


def test_study_figures_with_zero_one_and_many_complete_trials():
    import matplotlib.pyplot as plt

    study = optuna.create_study(direction="maximize")
    assert tuning.study_figures(study, 0) == ({}, {})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    figures, importances = tuning.study_figures(study, 0)
    assert set(figures) == {"optimization_history.png"} and importances == {}
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0 * t.suggest_int("k", 1, 3), n_trials=8)
    figures, importances = tuning.study_figures(study, 0, "roc_auc")
    assert set(figures) == {"optimization_history.png", "param_importances.png"}
    assert set(importances) == {"x", "k"} and importances["x"] > importances["k"]
    history = figures["optimization_history.png"].axes[0]
    assert history.get_ylabel() == "cv roc_auc"
    figures["optimization_history.png"].canvas.draw()
    assert all(float(t).is_integer() for t in history.get_xticks())  # trial numbers are whole
    for fig in figures.values():
        plt.close(fig)


def test_a_worker_rebuilds_the_exact_folds_from_the_logged_description(tmp_path):
    """What a tune-worker on another machine does: description + Parquet rows -> folds."""
    from mlcycle.config.schema import PreprocessConfig
    from mlcycle.core.modeling import build_preprocessor, cv_splitter, prepare_folds
    from tests.conftest import typed_sessions

    _, schema, typed, derived, plan = typed_sessions(400)
    preprocessor = build_preprocessor(schema, PreprocessConfig(), plan, derived, 5)
    local = prepare_folds(preprocessor, typed[list(schema.features)], typed[schema.target], cv_splitter(schema.task, 3, 5, False))

    description = tuning.describe_objective(schema, plan, PreprocessConfig(), derived, {"logreg": LOGREG}, "roc_auc", 3, 5, False)
    typed[[*schema.features, schema.target]].to_parquet(tmp_path / "train.parquet", index=False)
    import json

    remote = tuning.objective_from_description(json.loads(json.dumps(description)), pd.read_parquet(tmp_path / "train.parquet"))
    assert len(remote.folds) == len(local) == 3
    for mine, theirs in zip(local, remote.folds, strict=True):
        pd.testing.assert_frame_equal(mine.X_train, theirs.X_train)
        pd.testing.assert_frame_equal(mine.X_valid, theirs.X_valid)
        np.testing.assert_array_equal(mine.y_valid, theirs.y_valid)
    assert remote.classes == schema.classes and remote.task is schema.task


SLOW_FOREST = EstimatorSpec(  # about 0.35 s a fold here: long enough for a deadline to pass inside a trial
    estimator="sklearn.ensemble.RandomForestClassifier",
    params={"n_estimators": 400, "n_jobs": 1},
    search_space={"max_depth": {"type": "int", "low": 2, "high": 6}},
)


def test_a_trial_running_at_the_deadline_stops_at_its_next_fold_once_the_study_has_a_result():
    objective = small_objective(SLOW_FOREST, n_folds=3)
    search = tuning.Search.of(study_name="deadline", n_trials=10)
    study = tuning.load_study(search, objective, create=True)
    first: list[tuning.TrialResult] = []
    # no complete trial yet: the first one runs all its folds even though the deadline passes
    work(study, objective, search, quota=Quota(1), deadline=time.time() + 0.1, on_trial=first.append)
    assert [(r.state, len(r.fold_scores), r.stopped) for r in first] == [("COMPLETE", 3, False)]
    # now past the deadline inside fold 1: stopped there, PRUNED, and no further trial starts
    seen: list[tuning.TrialResult] = []
    work(study, objective, search, quota=Quota(5), deadline=time.time() + 0.1, on_trial=seen.append)
    assert [(r.state, r.pruned_step, len(r.fold_scores), r.stopped) for r in seen] == [("PRUNED", 1, 1, True)]
    record = trial_record(seen[0], "roc_auc")
    assert record.tags["mlcycle.stopped_by"] == "tune.timeout" and record.status == "KILLED"
