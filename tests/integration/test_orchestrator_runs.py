"""Under an orchestrator's MLflow run: what Kubeflow Pipelines' MLflow integration does.

KFP (2.17+, with its MLflow plugin on) creates one MLflow run per pipeline run and, per task,
a nested run under it, and sets MLFLOW_RUN_ID (that task's run), MLFLOW_EXPERIMENT_ID and
MLFLOW_TRACKING_URI in the task's container. mlcycle takes the task's run as its root, as it
does under `mlflow run`: the train task's run holds the seven stages, the monitor task's run
is the monitoring run, the retrain task's run is the retrain's root. Reproduced here with the
real CLI in subprocesses, on a private sqlite store, with the runs made as KFP makes them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from mlcycle.tracking import runs
from tests.conftest import TINY, subprocess_env

pytestmark = pytest.mark.slow


def kfp_task_run(client: MlflowClient, experiment_id: str, parent_id: str, task: str) -> str:
    """A task's nested run, as KFP's driver creates it: a name and the parent tag, RUNNING."""
    return client.create_run(experiment_id, run_name=task, tags={runs.PARENT_TAG: parent_id}).info.run_id


def cli(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mlcycle", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode in (0, 11), proc.stderr[-3000:]
    return proc


def stages_under(client: MlflowClient, experiment_id: str, run_id: str) -> list:
    return [r for r in runs.children(client, experiment_id, run_id) if r.data.tags.get(runs.KIND_TAG) == runs.KIND_STAGE]


def test_train_monitor_and_retrain_take_the_task_run_as_their_root(store, tmp_path):
    client = MlflowClient(store)
    experiment_id = client.create_experiment("kfp-pipelines", artifact_location=(tmp_path / "artifacts").as_uri())
    pipeline_run = client.create_run(experiment_id, run_name="mlcycle-loop-run").info.run_id
    env = subprocess_env(store, tmp_path) | {"MLFLOW_EXPERIMENT_ID": experiment_id}

    # train: the task's run is the root run of the pipeline, its stages are its children
    train_task = kfp_task_run(client, experiment_id, pipeline_run, "train")
    result = tmp_path / "train.json"
    cli(["train", *TINY, "evaluate.plots=false", f"hydra.run.dir={tmp_path}/hydra", "--result-file", str(result)],
        env | {"MLFLOW_RUN_ID": train_task}, tmp_path)
    trained = json.loads(result.read_text())
    assert trained["run_id"] == train_task and trained["registered_version"] == "1" and trained["promoted"] is True
    root = client.get_run(train_task)
    assert root.info.status == "FINISHED" and root.data.tags[runs.KIND_TAG] == runs.KIND_PIPELINE
    assert root.data.tags[runs.PARENT_TAG] == pipeline_run  # still where KFP put it
    stages = stages_under(client, experiment_id, train_task)
    assert [s.info.run_name for s in stages] == list(STAGES)
    assert all(s.info.status == "FINISHED" for s in stages)
    assert runs.root_of(client, stages[0].info.run_id).info.run_id == train_task

    # monitor: the task's run is the monitoring run, and the top of its own tree
    monitor_task = kfp_task_run(client, experiment_id, pipeline_run, "monitor")
    result = tmp_path / "monitor.json"
    cli(["monitor", "batch.n_rows=600", "batch.drift=2", "monitor.retrain_on=never", "monitor.report=false",
         f"monitor.result_file={result}"], env | {"MLFLOW_RUN_ID": monitor_task}, tmp_path)
    monitored = json.loads(result.read_text())
    assert monitored["run_id"] == monitor_task and monitored["verdict"] == "decay"
    mon = client.get_run(monitor_task)
    assert mon.info.status == "FINISHED" and mon.data.tags[runs.KIND_TAG] == runs.KIND_MONITOR
    assert runs.root_of(client, monitor_task).info.run_id == monitor_task  # not KFP's pipeline run

    # retrain (another task): ITS run is the retrain's root, tagged with the monitoring run
    retrain_task = kfp_task_run(client, experiment_id, pipeline_run, "retrain")
    result = tmp_path / "retrain.json"
    cli(["retrain", monitor_task, "--result-file", str(result), 'monitor.retrain_overrides=["tune.n_trials=2"]'],
        env | {"MLFLOW_RUN_ID": retrain_task}, tmp_path)
    retrained = json.loads(result.read_text())
    assert retrained["run_id"] == retrain_task and retrained["monitoring_run_id"] == monitor_task
    assert retrained["registered_version"] == "2"
    run = client.get_run(retrain_task)
    assert run.info.status == "FINISHED" and run.data.tags["mlcycle.triggered_by"] == monitor_task
    assert [s.info.run_name for s in stages_under(client, experiment_id, retrain_task)] == list(STAGES)
    triggered = client.search_runs([experiment_id], f"tags.`mlcycle.triggered_by` = '{monitor_task}'")
    assert [r.info.run_id for r in triggered] == [retrain_task]  # no second, detached root
    assert client.get_run(monitor_task).data.tags["mlcycle.retrain_run_id"] == retrain_task

    # nothing outside KFP's tree: every run is the pipeline run or below it; only it is RUNNING
    everything = client.search_runs([experiment_id], max_results=1000)
    tops = {runs.root_of(client, r.info.run_id).info.run_id for r in everything if r.info.run_id != pipeline_run}
    assert tops == {train_task, monitor_task, retrain_task}
    assert [r.info.run_id for r in everything if r.info.status == "RUNNING"] == [pipeline_run]
    assert len(client.search_experiments()) == 2  # Default and KFP's: mlcycle made none of its own
