"""Several processes start one study together on a fresh PostgreSQL database (issue 15;
optuna#1092: each process creating Optuna's tables at once fails with a duplicate key in
pg_type). Four spawned processes, released at the same instant by a barrier, each run
``tuning.optimize`` (what the tune stage of every `mlcycle train` and `tune.n_jobs` worker
runs) on the same fresh database: all succeed, and the study has exactly ``n_trials``
trials, numbered 0..n-1, however the workers raced for the last ones. The same with real
`mlcycle train` and `mlcycle tune-worker` processes and a tracking server is in
tests/server/test_tune_workers.py."""

from __future__ import annotations

import multiprocessing
import queue

import optuna
import pytest
from optuna.trial import TrialState

from mlcycle.core import tuning
from tests.unit.test_tuning_core import small_objective

pytestmark = pytest.mark.postgres

WORKERS = 4
N_TRIALS = 12


def start_together(storage: str, index: int, barrier, results) -> None:
    objective = small_objective(n_folds=2)
    search = tuning.Search.of(study_name="fresh", n_trials=N_TRIALS, storage=storage)
    barrier.wait(timeout=120)
    try:
        result = tuning.optimize(objective, search, worker_seed=index)
        results.put((index, "ok", result.n_run))
    except Exception as exc:
        results.put((index, "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
        raise


def test_workers_starting_together_on_a_fresh_database_run_exactly_n_trials(postgres_storage):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    workers = [context.Process(target=start_together, args=(postgres_storage, i, barrier, results)) for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    outcomes = []
    with pytest.raises(queue.Empty):
        while True:
            outcomes.append(results.get(timeout=1))
    assert sorted(o[1] for o in outcomes) == ["ok"] * WORKERS, outcomes
    assert [w.exitcode for w in workers] == [0] * WORKERS
    assert sum(o[2] for o in outcomes) == N_TRIALS  # no worker ran a trial the study did not need

    storage = tuning.open_storage(tuning.Search.of(study_name="fresh", storage=postgres_storage))
    trials = optuna.load_study(study_name="fresh", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    assert len({t.params["C"] for t in trials}) == N_TRIALS  # each worker drew its own points


def test_trial_threads_of_one_pipeline_on_postgres_run_exactly_n_trials(tiny_cfg, postgres_storage):
    """Four threads counting the shared study at the same moment each saw a free slot, and
    the study got four trials for a target of two; the claim lock makes the count exact."""
    from mlflow import MlflowClient

    from mlcycle import pipeline

    result = pipeline.run(tiny_cfg("stages=[ingest,preprocess,features,tune]", "tune.n_trials=2", "tune.n_jobs=4",
                                   "tune.parallel=thread", f"tune.storage={postgres_storage}"))
    client = MlflowClient()
    (tune,) = client.search_runs([result.experiment_id], "tags.`mlcycle.stage` = 'tune'")
    trial_runs = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    assert sorted(int(r.data.tags["mlcycle.trial_number"]) for r in trial_runs) == [0, 1]
    assert tune.data.metrics["trials_complete"] == tune.data.metrics["trials_run"] == 2
    storage = tuning.open_storage(tuning.Search.of(study_name="-", storage=postgres_storage))
    study = optuna.load_study(study_name=tune.data.params["study_name"], storage=storage)
    assert [t.number for t in study.trials] == [0, 1]
