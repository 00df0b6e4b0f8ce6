"""Run ownership, `mlcycle runs close-stale` and secret masking, on a private sqlite store.

The tracking-server versions (a real SIGKILL, a real retried request) are in tests/server/;
here the same logic runs fast on every machine, with real processes for liveness.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlcycle import pipeline
from mlcycle.commands.runs import main as runs_main
from mlcycle.core import liveness
from mlcycle.tracking.runs import TOKEN_TAG

HOUR_MS = 3600 * 1000


@pytest.fixture
def dead_owner() -> liveness.Owner:
    """The owner tags of a process that really existed and is gone."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = replace(liveness.current(), pid=child.pid, start=liveness.process_start(child.pid))
    child.kill()
    child.wait()
    return owner


def make_run(client, exp, name, owner=None, parent=None, token=None, start_time=None):
    tags = {**(owner.tags() if owner else {})}
    if parent:
        tags["mlflow.parentRunId"] = parent
    if token:
        tags[TOKEN_TAG] = token
    return client.create_run(exp, run_name=name, tags=tags, start_time=start_time).info.run_id


def test_close_stale_closes_dead_runs_keeps_live_ones_and_deletes_ghosts(store, dead_owner, capsys):
    client = MlflowClient()
    exp = client.create_experiment("stale")
    now = int(time.time() * 1000)
    root = make_run(client, exp, "root", dead_owner, token="t-root")
    stage = make_run(client, exp, "tune", dead_owner, parent=root, token="t-tune")
    trial = make_run(client, exp, "trial-000", parent=stage)  # no owner tags: inherits the stage's
    ghost = make_run(
        client, exp, "tune", dead_owner, parent=root, token="t-tune"
    )  # same token, no children
    finished = make_run(client, exp, "done", dead_owner)
    client.set_terminated(finished, "FINISHED")
    alive = make_run(client, exp, "alive", liveness.current())
    remote_old = make_run(
        client,
        exp,
        "elsewhere",
        replace(dead_owner, host="other-host"),
        start_time=now - 3 * HOUR_MS,
    )
    untagged = make_run(client, exp, "untagged")

    assert runs_main(["close-stale", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would close" in out and "would delete" in out
    assert client.get_run(root).info.status == "RUNNING"  # dry run changed nothing

    assert runs_main(["close-stale"]) == 0
    out = capsys.readouterr().out
    for run_id in (root, stage, trial):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED", run.info.run_name
        assert run.data.tags["mlcycle.closed_stale"] == "true"
        assert (
            f"process {dead_owner.pid} on {dead_owner.host} is gone"
            in run.data.tags["mlcycle.error"]
        )
    assert client.get_run(ghost).info.lifecycle_stage == "deleted"
    assert client.get_run(ghost).info.status == "FAILED"  # not RUNNING, even if restored
    assert client.get_run(stage).info.lifecycle_stage == "active"  # the twin with the trial stays
    assert client.get_run(finished).info.status == "FINISHED"
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(remote_old).info.status == "RUNNING"  # another host: cannot tell
    assert client.get_run(untagged).info.status == "RUNNING"
    assert "7 RUNNING run(s)" in out and "3 closed, 1 deleted, 3 kept" in out

    # --older-than also closes what cannot be judged, if it started before the cut-off
    assert runs_main(["close-stale", "--older-than", "2"]) == 0
    assert client.get_run(remote_old).info.status == "FAILED"
    assert "more than 2 h ago" in client.get_run(remote_old).data.tags["mlcycle.error"]
    assert client.get_run(untagged).info.status == "RUNNING"  # started just now
    assert client.get_run(alive).info.status == "RUNNING"  # never: its process is this one
    running = client.search_runs(
        [exp], filter_string="attributes.status = 'RUNNING'", run_view_type=ViewType.ALL
    )
    # every run is accounted for: the ghost is deleted and ended, not left RUNNING
    assert {r.info.run_id for r in running} == {alive, untagged}


def test_close_stale_names_a_missing_experiment(store, capsys):
    assert runs_main(["close-stale", "--experiment", "nope"]) == 2
    assert "experiment 'nope' not found" in capsys.readouterr().err


def test_pipeline_runs_carry_their_owner_and_a_create_token(tiny_cfg, capsys):
    result = pipeline.run(tiny_cfg("registry.enabled=false", "evaluate.plots=false"))
    client = MlflowClient()
    me = liveness.current()
    root = client.get_run(result.run_id)
    stages = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'"
    )
    for run in [root, *stages]:
        assert liveness.from_tags(run.data.tags) == me
        assert len(run.data.tags[TOKEN_TAG]) == 32
    tune = next(r for r in stages if r.info.run_name == "tune")
    trials = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'"
    )
    assert trials and all(TOKEN_TAG in t.data.tags for t in trials)
    assert len({t.data.tags[TOKEN_TAG] for t in [root, *stages, *trials]}) == 1 + len(stages) + len(
        trials
    )
    assert root.data.tags["mlflow.user"]  # MLflow's context tags are still resolved
    # nothing is stale after a finished pipeline
    assert runs_main(["close-stale"]) == 0
    assert "0 RUNNING run(s)" in capsys.readouterr().out


def test_secrets_in_the_config_never_reach_the_store(tiny_cfg):
    cfg = tiny_cfg(
        "registry.enabled=false",
        "evaluate.plots=false",
        "mlflow.tracking_uri=postgresql+psycopg2://bob:hunter2@db.example.com/mlflow",  # MLFLOW_TRACKING_URI wins
        "+mlflow.tags.api_token=hunter3",
    )
    result = pipeline.run(cfg)
    root = MlflowClient().get_run(result.run_id)
    assert (
        root.data.params["mlflow.tracking_uri"]
        == "postgresql+psycopg2://bob:***@db.example.com/mlflow"
    )
    assert root.data.params["mlflow.tags.api_token"] == "***"
    assert root.data.tags["api_token"] == "***"
    text = mlflow.artifacts.load_text(f"{root.info.artifact_uri}/config.yaml")
    assert "hunter" not in text
    assert yaml.safe_load(text)["mlflow"]["tracking_uri"].startswith(
        "postgresql+psycopg2://bob:***@"
    )
    everything = " ".join([*root.data.params.values(), *root.data.tags.values()])
    assert "hunter" not in everything


def test_the_next_pipeline_closes_what_a_killed_pipeline_left_running(tiny_cfg, store, tmp_path, dead_owner, caplog):
    """SIGKILL a real `mlcycle train` mid-tune: its root and tune runs stay RUNNING. The next
    pipeline on the store closes them FAILED with the reason, and leaves alone a live
    process's run, another host's run and a run made outside mlcycle."""
    import os
    import signal

    from tests.conftest import TINY, subprocess_env
    from tests.server.harness import wait_for

    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlcycle", "train", *TINY, "tune.n_trials=5000",
                                 "registry.enabled=false"], env=subprocess_env(store, tmp_path), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient()

    def tune_with_trials():
        assert proc.poll() is None, log.read_text()[-3000:]
        exp = client.get_experiment_by_name("mlcycle")
        tune = exp and client.search_runs(
            [exp.experiment_id], "tags.`mlcycle.stage` = 'tune' and attributes.status = 'RUNNING'")
        if tune and client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{tune[0].info.run_id}'"):
            return exp.experiment_id
        return None

    try:
        exp = wait_for(tune_with_trials, 300, "the tune stage to log trials", interval=0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    running = client.search_runs([exp], "attributes.status = 'RUNNING'")
    kinds = sorted(r.data.tags.get("mlcycle.run_kind") for r in running)
    # the root run, the tune stage run, and trial runs the killed writer was writing (if any)
    assert kinds[:2] == ["pipeline", "stage"] and set(kinds[2:]) <= {"trial"}, kinds
    left = {r.info.run_id for r in running}
    alive = make_run(client, exp, "alive", liveness.current())
    elsewhere = make_run(client, exp, "elsewhere", replace(dead_owner, host="other-host"))
    untagged = make_run(client, exp, "untagged")

    with caplog.at_level("WARNING", logger="mlcycle.tracking.hygiene"):
        result = pipeline.run(tiny_cfg("registry.enabled=false", "evaluate.plots=false"))

    for run_id in left:
        run = client.get_run(run_id)
        assert run.info.status == "FAILED", run.info.run_name
        assert run.data.tags["mlcycle.closed_stale"] == "true"
        assert run.data.tags["mlcycle.error"] == (
            f"stale: process {proc.pid} on {liveness.current().host} is gone; "
            f"closed by the next mlcycle pipeline (pid {os.getpid()})"
        )
        assert f"closed run {run_id}" in caplog.text  # and said so
    for run_id in (alive, elsewhere, untagged):
        assert client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(result.run_id).info.status == "FINISHED"


def test_project_runs_nothing_started_in_are_closed_and_started_ones_kept(store, monkeypatch):
    """hygiene.never_started: after the grace, a run `mlflow run` made that no mlcycle command
    ever tagged is closed by the sweep; a submitted Kubernetes Job (image pushed), a run an
    mlcycle command attached to, a launched local entry point (any project's) and this
    process's own MLFLOW_RUN_ID are kept."""
    from mlcycle.tracking import hygiene

    client = MlflowClient()
    exp = client.create_experiment("projects")
    past = int(time.time() * 1000) - hygiene.SUBMIT_GRACE_S * 1000 - 1000
    project = {"mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": "main"}
    k8s = {**project, "mlflow.project.backend": "kubernetes"}

    def project_run(name, tags, start_time=past):
        return client.create_run(exp, run_name=name, tags=tags, start_time=start_time).info.run_id

    unbuilt = project_run("no-image", k8s)
    local = project_run("env-build-died", project)
    submitted = project_run("job-queued", {**k8s, hygiene.IMAGE_TAG: "sha256:0"})
    attached = project_run("pod-running", {**k8s, hygiene.IMAGE_TAG: "sha256:0",
                                           **replace(liveness.current(), host="pod-1").tags()})
    recent = project_run("building-image", k8s, start_time=None)
    launched = project_run("other-project-job", {**project, "mlflow.project.backend": "local"})
    mine = project_run("my-own", project)
    monkeypatch.setenv("MLFLOW_RUN_ID", mine)

    closed = hygiene.sweep(client, [exp], closed_by="test")
    assert {v.run_id for v in closed} == {unbuilt, local}
    assert "stopped before it pushed an image" in client.get_run(unbuilt).data.tags["mlcycle.error"]
    assert "stopped before the entry point ran" in client.get_run(local).data.tags["mlcycle.error"]
    for run_id in (submitted, attached, recent, launched, mine):
        assert client.get_run(run_id).info.status == "RUNNING"
