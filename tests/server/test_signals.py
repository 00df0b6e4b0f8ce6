"""Faults 3 and 4: the pipeline process is signalled mid-stage, against a real server on PostgreSQL.

SIGTERM: the stage run and the root run end KILLED, and a rerun works.
SIGKILL: the root and stage runs stay RUNNING (nothing can run in a killed process; the
trial writer process finishes the trial runs it was sent and exits); `mlcycle runs
close-stale` finds them, sees their process is gone, and ends them FAILED with the reason
as a tag.
"""

from __future__ import annotations

import signal

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from tests.server.harness import (
    all_runs,
    child_pids,
    children,
    cli,
    process_gone,
    roots,
    spawn,
    tiny_overrides,
    wait_for,
)

pytestmark = pytest.mark.postgres

# Enough trials that the tune stage is still running when the signal comes.
LONG_TUNE = "tune.n_trials=5000"


def start_and_wait_for_tune(server, experiment, cli_env, tmp_path):
    """Start `mlcycle train` and return (process, client, tune run) once trials are being logged."""
    proc = spawn(
        ["train", *tiny_overrides(experiment, LONG_TUNE)],
        cli_env(server.url),
        tmp_path / "train.log",
    )
    client = MlflowClient(server.url)

    def tune_with_trials():
        if proc.poll() is not None:
            raise AssertionError(
                f"pipeline exited early:\n{(tmp_path / 'train.log').read_text()[-3000:]}"
            )
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        tune = client.search_runs(
            [exp.experiment_id],
            filter_string="tags.`mlcycle.stage` = 'tune' and attributes.status = 'RUNNING'",
        )
        if tune and children(client, exp.experiment_id, tune[0].info.run_id):
            return tune[0]
        return None

    try:
        tune = wait_for(tune_with_trials, 300, "the tune stage to log trials", interval=0.5)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, client, tune


def test_sigterm_mid_stage_ends_stage_and_root_killed_and_a_rerun_works(
    shared_server, experiment, cli_env, tmp_path
):
    proc, client, tune = start_and_wait_for_tune(shared_server, experiment, cli_env, tmp_path)
    proc.send_signal(signal.SIGTERM)
    returncode = proc.wait(timeout=120)
    output = (tmp_path / "train.log").read_text()
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "error: [stage tune] received signal 15; the open runs were ended KILLED" in output

    [root] = roots(client, experiment)
    assert root.info.status == "KILLED"
    assert root.data.tags["mlcycle.error"] == "terminated by SIGTERM"
    stages = {
        r.info.run_name: r for r in children(client, root.info.experiment_id, root.info.run_id)
    }
    assert list(stages) == ["ingest", "preprocess", "features", "tune"]
    assert [r.info.status for r in stages.values()] == [
        "FINISHED",
        "FINISHED",
        "FINISHED",
        "KILLED",
    ]
    assert stages["tune"].info.run_id == tune.info.run_id
    trials = children(client, root.info.experiment_id, tune.info.run_id)
    assert trials and all(
        t.info.status != "RUNNING" for t in trials
    )  # the writer drained its queue
    assert [r for r in all_runs(client, experiment) if r.info.status == "RUNNING"] == []

    rerun = cli(["train", *tiny_overrides(experiment)], cli_env(shared_server.url))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    finished = [r for r in roots(client, experiment) if r.info.status == "FINISHED"]
    assert len(finished) == 1
    again = children(client, root.info.experiment_id, finished[0].info.run_id)
    assert [r.info.run_name for r in again] == list(STAGES)
    assert all(r.info.status == "FINISHED" for r in again)


def test_sigkill_leaves_runs_that_close_stale_ends_failed(
    shared_server, experiment, cli_env, tmp_path
):
    proc, client, tune = start_and_wait_for_tune(shared_server, experiment, cli_env, tmp_path)
    helpers = child_pids(proc.pid)  # the trial writer process (forked: a tracking server), ...
    assert helpers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # the writer outlives the pipeline only to finish the trial runs it was sent, then exits
    wait_for(lambda: all(map(process_gone, helpers)), 60, "the killed pipeline's child processes to exit")
    [root] = roots(client, experiment)
    running = {r.info.run_id for r in all_runs(client, experiment) if r.info.status == "RUNNING"}
    assert running == {root.info.run_id, tune.info.run_id}  # what SIGKILL leaves behind
    trials = children(client, tune.info.experiment_id, tune.info.run_id)
    assert trials and all(t.info.status == "FINISHED" and t.data.metrics for t in trials)

    # a live pipeline's runs in another experiment must survive the sweep
    live = client.create_experiment(f"{experiment}-live")
    from mlcycle.core import liveness

    alive = client.create_run(live, run_name="alive", tags=liveness.current().tags()).info.run_id

    env = cli_env(shared_server.url)
    done = cli(["runs", "close-stale"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"process {proc.pid} on" in done.stdout

    for run_id in running:
        run = client.get_run(run_id)
        assert run.info.status == "FAILED", run.info.run_name
        assert run.data.tags["mlcycle.closed_stale"] == "true"
        assert f"stale: process {proc.pid} on " in run.data.tags["mlcycle.error"]
        assert "is gone; closed by `mlcycle runs close-stale`" in run.data.tags["mlcycle.error"]
    assert [r for r in all_runs(client, experiment) if r.info.status == "RUNNING"] == []
    assert client.get_run(alive).info.status == "RUNNING"
    client.set_terminated(alive)

    rerun = cli(["runs", "close-stale", "--experiment", experiment], env)
    assert rerun.returncode == 0 and "0 RUNNING run(s)" in rerun.stdout
