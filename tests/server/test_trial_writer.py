"""The forked trial writer against a real tracking server: every submitted trial becomes
exactly one whole run under the tune run, whichever of the two processes dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlcycle.tracking.runs import GHOST_TAG, TOKEN_TAG
from mlcycle.tracking.trials import ProcessTrialWriter, open_writer
from tests.integration.test_trial_runs import check_written, records
from tests.server.harness import process_gone, wait_for

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def tune_run(client: MlflowClient, experiment: str) -> tuple[str, str]:
    experiment_id = client.create_experiment(experiment)
    return experiment_id, client.create_run(experiment_id, run_name="tune").info.run_id


def test_auto_forks_a_writer_process_that_writes_every_trial_whole(shared_server, experiment):
    client = MlflowClient(shared_server.url)
    experiment_id, parent = tune_run(client, experiment)
    writer = open_writer(client, experiment_id, parent)
    assert writer.kind == "process" and writer.pid not in (None, os.getpid())
    expected = records(7)
    for record in expected:
        writer.submit(record)
    writer.close()
    assert writer._process.exitcode == 0  # it ended after the last record
    check_written(client, experiment_id, parent, expected)
    assert sorted(writer.written) == sorted(writer._tokens.values()) and len(writer.written) == 7


def test_trial_threads_submitting_at_once_each_get_their_own_run(shared_server, experiment):
    """With tune.parallel=thread every trial thread calls submit()."""
    client = MlflowClient(shared_server.url)
    experiment_id, parent = tune_run(client, experiment)
    writer = open_writer(client, experiment_id, parent, "process")
    expected = records(24)
    start = threading.Barrier(3)

    def submit(part):
        start.wait()
        for record in part:
            writer.submit(record)

    threads = [threading.Thread(target=submit, args=(expected[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    check_written(client, experiment_id, parent, expected)


def test_a_killed_writer_process_loses_no_trial(shared_server, experiment):
    """SIGKILL the child with three trials written and three never read, one of those
    already half-written (created, nothing logged: what a kill between two calls leaves).
    close() writes the missing ones from this process and removes the half-written run."""
    client = MlflowClient(shared_server.url)
    experiment_id, parent = tune_run(client, experiment)
    writer = ProcessTrialWriter(client, experiment_id, parent)
    expected = records(6)
    for record in expected[:3]:
        writer.submit(record)
    wait_for(
        lambda: len(client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status != 'RUNNING'")) == 3,
        60, "the first three trial runs",
    )
    os.kill(writer.pid, signal.SIGSTOP)  # reads nothing more
    for record in expected[3:]:
        writer.submit(record)
    token, half = writer._records[4]
    half_run = client.create_run(
        experiment_id, run_name=half.name, tags={"mlflow.parentRunId": parent, TOKEN_TAG: token}
    ).info.run_id
    os.kill(writer.pid, signal.SIGKILL)
    writer.close()

    check_written(client, experiment_id, parent, expected)
    [ghost] = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", run_view_type=ViewType.DELETED_ONLY)
    assert ghost.info.run_id == half_run and ghost.info.status == "FAILED" and GHOST_TAG in ghost.data.tags


def test_the_writer_process_finishes_its_queue_when_the_tuning_process_is_killed(shared_server, experiment, tmp_path):
    client = MlflowClient(shared_server.url)
    experiment_id, parent = tune_run(client, experiment)
    script = textwrap.dedent(f"""
        import os, signal, time
        from mlflow import MlflowClient
        from mlcycle.tracking.trials import open_writer
        from tests.integration.test_trial_runs import records
        writer = open_writer(MlflowClient({shared_server.url!r}), {experiment_id!r}, {parent!r})
        assert writer.kind == "process"
        for record in records(5):
            writer.submit(record)
        print(writer.pid, flush=True)
        time.sleep(1)  # the queue's feeder thread has sent them to the child
        os.kill(os.getpid(), signal.SIGKILL)  # no close(): the writer is on its own
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    child = int(done.stdout.split()[0])
    wait_for(lambda: process_gone(child), 60, "the orphaned writer process to finish and exit")
    check_written(client, experiment_id, parent, records(5))
