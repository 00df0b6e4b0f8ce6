"""`mlflow run --backend kubernetes`, without a cluster or a Docker daemon (none here).

What runs for real: MLflow's submitter, which creates its run and then fails (no
`kubernetes` package; the root project has no docker_env; no Docker daemon) and leaves the
run RUNNING; mlcycle's stale-run sweep, which closes it after the grace period and keeps it
before; deploy/kubernetes through MLflow's own checks and its own Job builder; and the
Job's container command, run as a pod would run it (argv, no shell, the Job's environment,
the variant folder as working directory), attaching mlcycle's tree to MLflow's run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlcycle import cli
from mlcycle.commands.runs import main as runs_main
from mlcycle.tracking import hygiene
from tests.conftest import PROJECT_ROOT, subprocess_env, venv_python
from tests.e2e.test_entry_points import TINY, assert_pipeline_tree, tree

VARIANT = PROJECT_ROOT / "deploy" / "kubernetes"
CONFIG = VARIANT / "kubernetes_config.json"
GRACE_MS = hygiene.SUBMIT_GRACE_S * 1000
KFP_HINT = "a virtual environment with the kubernetes package (scripts/kfp_venv.sh)"


def submit(store: str, tmp_path: Path, python: str, project: Path) -> subprocess.CompletedProcess:
    """`mlflow run <project> --backend kubernetes` with this python's MLflow, from the root."""
    mlflow = str(Path(python).parent / "mlflow")
    cmd = [mlflow, "run", str(project), "--backend", "kubernetes", "--backend-config", str(CONFIG),
           "--experiment-name", "k8s", "-P", "n_trials=2"]
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(store, tmp_path),
                          cwd=PROJECT_ROOT, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("project", "venv", "error", "closer"),
    [
        (PROJECT_ROOT, None, r"No module named 'kubernetes'", "sweep"),
        (PROJECT_ROOT, "MLCYCLE_KFP_VENV", r"AttributeError: 'NoneType' object has no attribute 'get'", "close-stale"),
        (VARIANT, "MLCYCLE_KFP_VENV", r"Docker (daemon|executable)", "sweep"),
    ],
    ids=["no-kubernetes-package", "root-project-no-docker-env", "variant-no-docker"],
)
def test_a_failed_kubernetes_submission_is_closed_after_the_grace_period(store, tmp_path, capsys, project, venv, error, closer):
    python = venv_python(venv, KFP_HINT) if venv else sys.executable
    proc = submit(store, tmp_path, python, project)
    assert proc.returncode != 0 and re.search(error, proc.stderr), proc.stderr[-3000:]
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("k8s").experiment_id
    (run,) = client.search_runs([exp])
    assert run.info.status == "RUNNING"  # what MLflow leaves behind
    assert run.data.tags["mlflow.source.type"] == "PROJECT" and hygiene.IMAGE_TAG not in run.data.tags
    start = run.info.start_time

    # within the grace period (an image may still be building): kept, by the sweep too
    (kept,) = hygiene.judge(client, [run], now_ms=start + GRACE_MS - 1)
    assert kept.action == hygiene.KEEP
    assert hygiene.sweep(client, [exp], closed_by="test", now_ms=start + GRACE_MS - 1) == []
    assert client.get_run(run.info.run_id).info.status == "RUNNING"

    if closer == "sweep":  # what every mlcycle command does as it opens the experiment
        (closed,) = hygiene.sweep(client, [exp], closed_by="the next mlcycle train", now_ms=start + GRACE_MS)
        assert closed.run_id == run.info.run_id and closed.action == hygiene.CLOSE
        expected = "stopped before it pushed an image" if project == VARIANT else "stopped before the entry point ran"
        assert expected in closed.reason and "within 30 min" in closed.reason
    else:
        assert runs_main(["close-stale", "--older-than", "0"]) == 0
        assert f"closed       {run.info.run_id}" in capsys.readouterr().out
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FAILED"
    assert after.data.tags[hygiene.CLOSED_TAG] == "true"
    assert after.data.tags["mlcycle.error"].startswith("stale: ")


def test_the_variant_passes_mlflows_own_checks(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config
    from mlflow.projects._project_spec import load_project
    from mlflow.projects.docker import validate_docker_env

    root, variant = load_project(str(PROJECT_ROOT)), load_project(str(VARIANT))
    assert root.docker_env is None  # why `mlflow run . --backend kubernetes` fails
    assert variant.name == "mlcycle" and variant.docker_env == {"image": "mlcycle:0.1.0"}
    validate_docker_env(variant)
    for name in ("main", "monitor"):  # the same parameters and command as the root's
        ours, theirs = variant.get_entry_point(name), root.get_entry_point(name)
        assert {p: (s.type, s.default) for p, s in ours.parameters.items()} == \
            {p: (s.type, s.default) for p, s in theirs.parameters.items()}
        assert ours.command == theirs.command.replace("PYTHONPATH=src:$PYTHONPATH ", "")
    monkeypatch.chdir(PROJECT_ROOT)  # the config's template path is relative to the root
    kube = _parse_kubernetes_config(json.loads(CONFIG.read_text()))
    job = kube["kube-job-template"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]
    assert all("valueFrom" in e for e in container["env"] if e["name"].startswith("MLFLOW_TRACKING_"))


# MLflow's own Job builder, in the environment that has the kubernetes package; prints the Job
JOB_SCRIPT = """
import json, sys, yaml
from mlflow.projects._project_spec import load_project
from mlflow.projects.kubernetes import _get_kubernetes_job_definition, _get_run_command
from mlflow.projects.utils import get_entry_point_command, get_run_env_vars
project = load_project(sys.argv[1])
command = get_entry_point_command(project, "main", json.loads(sys.argv[2]), None)
with open(sys.argv[3]) as f:
    template = yaml.safe_load(f)
job = _get_kubernetes_job_definition(project.name, "registry.example.com/ml/mlcycle-run", "sha256:0",
                                     _get_run_command(command), get_run_env_vars(sys.argv[4], "7"), template)
print(json.dumps(job))
"""


@pytest.mark.slow
def test_mlflows_job_runs_mlcycle_train_and_attaches_to_its_run(store, tmp_path):
    """The Job MLflow would create: mlcycle's train command, the Secret references kept.
    Then its command, run as the pod runs it, makes MLflow's run the pipeline's root."""
    python = venv_python("MLCYCLE_KFP_VENV", KFP_HINT)
    client = MlflowClient(store)
    exp = client.create_experiment("k8s-pod")
    run_id = client.create_run(exp, tags={"mlflow.source.type": "PROJECT", "mlflow.project.backend": "kubernetes",
                                          hygiene.IMAGE_TAG: "sha256:0"}).info.run_id
    params = {"model": "logistic_regression", "n_trials": "2", "overrides": f"{TINY} registry.enabled=false"}
    built = subprocess.run([python, "-c", JOB_SCRIPT, str(VARIANT), json.dumps(params),
                            str(VARIANT / "kubernetes_job_template.yaml"), run_id],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-3000:]
    job = json.loads(built.stdout.splitlines()[-1])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ml/mlcycle-run@sha256:0"
    command = container["command"]
    assert command[:8] == ["python", "-m", "mlcycle", "train", "model=logistic_regression", "data=ecommerce",
                           "tune.n_trials=2", "--overrides"]
    assert command[8] == f"'{params['overrides']}'"  # quoted for a shell, and no shell will run it
    env = {e["name"]: e for e in container["env"]}
    # the template's env is kept (MLflow appends its own after it)
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlcycle-tracking", "key": "password"}
    assert env[cli.QUOTED_ARGV_ENV]["value"] == "true"
    assert env["MLFLOW_RUN_ID"]["value"] == run_id and env["MLFLOW_EXPERIMENT_ID"]["value"] == "7"

    # the pod: the Job's argv without a shell, its plain env values, in a copy of the folder
    # MLflow puts at /mlflow/projects/code; mlcycle and conf/ come from the installed checkout
    code = tmp_path / "code"
    shutil.copytree(VARIANT, code)
    pod_env = subprocess_env(store, tmp_path)
    pod_env.update({k: e["value"] for k, e in env.items() if "value" in e})
    pod_env.update(MLFLOW_TRACKING_URI=store, PYTHONPATH=str(PROJECT_ROOT / "src"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{pod_env['PATH']}")
    proc = subprocess.run(command, capture_output=True, text=True, env=pod_env, cwd=code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, by_parent = tree(client, [exp])
    (root,) = by_parent[None]
    assert root.info.run_id == run_id and root.info.status == "FINISHED"
    assert root.data.params["tune.cv_folds"] == "2" and root.data.params["model.name"] == "logistic_regression"
    assert_pipeline_tree(by_parent, root, n_trials=2)
    assert not any((code / name).exists() for name in ("outputs", "mlruns", "mlflow.db"))  # nothing in the pod's folder


def test_shell_quoted_argv_is_unquoted_only_when_the_job_says_so(monkeypatch):
    """The argv MLflow gives the pod: without the variable, the overrides stay one item."""
    monkeypatch.delenv(cli.QUOTED_ARGV_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["mlcycle", "train", "--overrides", "'tune.n_trials=2 data.n_rows=500'"])
    assert cli.normalize(cli.process_argv()[1:]) == ["tune.n_trials=2 data.n_rows=500"]
    monkeypatch.setenv(cli.QUOTED_ARGV_ENV, "true")
    assert cli.normalize(cli.process_argv()[1:]) == ["tune.n_trials=2", "data.n_rows=500"]
    monkeypatch.setattr(sys, "argv", ["mlcycle", "train", "model=x", "--overrides", "''"])  # an empty parameter
    assert cli.normalize(cli.process_argv()[1:]) == ["model=x"]
