"""Heartbeats on RDB storages: a worker killed mid-trial, with nothing but its heartbeat to
tell (no owner token on this host), leaves a RUNNING trial; once the grace period has
passed the next worker fails it and runs it again, and it does not count toward n_trials."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from optuna.trial import TrialState

from mlcycle.core import tuning
from tests.unit.test_tuning_core import small_objective

SILENT_WORKER = textwrap.dedent(
    """
    import sys, time, optuna
    storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="hb", storage=storage)
    def hang(trial):
        trial.suggest_float("C", 1e-3, 10.0, log=True)
        print("running", flush=True)
        time.sleep(600)
    study.optimize(hang, n_trials=1)
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def rdb_storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_storage")


def test_a_silent_workers_trial_fails_by_heartbeat_and_is_retried(rdb_storage):
    objective = small_objective()
    search = tuning.Search.of(study_name="hb", storage=rdb_storage, n_trials=3, seed=4, heartbeat_interval=1, grace_period=2)
    tuning.load_study(search, objective, create=True)
    child = subprocess.Popen([sys.executable, "-c", SILENT_WORKER, rdb_storage], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "running"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    study = optuna.load_study(study_name="hb", storage=rdb_storage)
    [orphan] = study.get_trials(states=(TrialState.RUNNING,))

    time.sleep(3)  # past the grace period
    result = tuning.optimize(objective, search)

    trials = result.study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params["C"] == orphan.params["C"]
    assert (result.counts.complete, result.counts.lost, result.n_run) == (3, 1, 3)
