"""End to end through the real entry points, in subprocesses: `mlflow run .` and a Hydra
multirun. Both must leave the same clean run tree as a direct call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from tests.conftest import PROJECT_ROOT, subprocess_env

pytestmark = pytest.mark.slow
TINY = "data.n_rows=500 tune.cv_folds=2 evaluate.plots=false"


def tree(client: MlflowClient, experiment_ids: list[str]):
    runs = client.search_runs(experiment_ids, max_results=1000)
    by_parent: dict[str | None, list] = {}
    for run in runs:
        by_parent.setdefault(run.data.tags.get("mlflow.parentRunId"), []).append(run)
    return runs, by_parent


def assert_pipeline_tree(by_parent, root, n_trials):
    stages = sorted(by_parent.get(root.info.run_id, []), key=lambda r: r.info.start_time)
    assert [s.info.run_name for s in stages] == list(STAGES)
    assert all(s.info.status == "FINISHED" for s in stages)
    tune = next(s for s in stages if s.info.run_name == "tune")
    assert len(by_parent.get(tune.info.run_id, [])) == n_trials


def test_mlflow_run_local_env_manager(store, tmp_path):
    env = subprocess_env(store, tmp_path)
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "local",
        "--experiment-name", "e2e", "-P", "model=logistic_regression", "-P", "n_trials=2",
        "-P", f"overrides={TINY} registry.model_name=e2e-model",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("e2e")
    runs, by_parent = tree(client, [experiment.experiment_id])
    roots = by_parent[None]
    assert len(roots) == 1
    root = roots[0]
    # the run `mlflow run` created is the root: it carries both the MLproject params and ours
    assert root.data.params["model"] == "logistic_regression"
    assert root.data.params["model.name"] == "logistic_regression"
    assert root.data.params["tune.cv_folds"] == "2"
    assert root.data.tags["mlflow.project.entryPoint"] == "main"
    assert root.info.status == "FINISHED"
    assert_pipeline_tree(by_parent, root, n_trials=2)
    assert len(runs) == 1 + len(STAGES) + 2
    assert str(client.get_model_version_by_alias("e2e-model", "champion").version) == "1"


def test_mlflow_run_uv_env_manager_builds_its_own_environment(store, tmp_path):
    """`--env-manager uv` installs conda.yaml's pip list into a fresh environment (cached by
    MLflow between runs) and runs the same entry point there."""
    env = subprocess_env(store, tmp_path)
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "uv",
        "--experiment-name", "e2e-uv", "-P", "model=logistic_regression", "-P", "n_trials=1",
        "-P", f"overrides={TINY} registry.enabled=false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("e2e-uv")
    runs, by_parent = tree(client, [experiment.experiment_id])
    (root,) = by_parent[None]
    assert root.data.tags["mlflow.project.env"] == "uv"
    assert root.info.status == "FINISHED"
    stages = sorted(by_parent[root.info.run_id], key=lambda r: r.info.start_time)
    assert [s.info.run_name for s in stages] == list(STAGES)


def test_hydra_multirun_gives_one_root_per_job(store, tmp_path):
    env = subprocess_env(store, tmp_path)
    cmd = [sys.executable, "-m", "mlcycle", "train", "-m", "model=logistic_regression,random_forest", "tune.n_trials=2", *TINY.split()]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mlcycle")
    runs, by_parent = tree(client, [experiment.experiment_id])
    roots = sorted(by_parent[None], key=lambda r: r.info.start_time)
    assert [r.data.params["model.name"] for r in roots] == ["logistic_regression", "random_forest"]
    for root in roots:
        assert root.info.status == "FINISHED"
        assert "test_roc_auc" in root.data.metrics and "cv_roc_auc" in root.data.metrics
        assert_pipeline_tree(by_parent, root, n_trials=2)
    assert len(runs) == 2 * (1 + len(STAGES) + 2)
    # Hydra's sweep outputs land under the project root, never the tracking store's location
    assert (tmp_path / "multirun").is_dir()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("+typo=1", "error: unknown config key 'typo'"),
        ("model.classifier.params.max_iter=-5", "error: model.classifier.params: The 'max_iter' parameter of LogisticRegression"),
        ("registry.model_name=../../x", "error: registry.model_name must be a registered model name"),
    ],
)
def test_mlflow_run_refuses_a_config_mistake_before_the_pipeline(store, tmp_path, overrides, message):
    """The run `mlflow run` made itself ends FAILED; the pipeline creates none."""
    env = subprocess_env(store, tmp_path)
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "local",
        "--experiment-name", "e2e-bad", "-P", "model=logistic_regression", "-P", "n_trials=1",
        "-P", f"overrides={TINY} registry.enabled=false {overrides}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode != 0
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in proc.stderr.splitlines() if line.startswith(message))]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("e2e-bad").experiment_id])
    assert [(r.info.status, r.data.tags.get("mlflow.project.entryPoint")) for r in runs] == [("FAILED", "main")]
