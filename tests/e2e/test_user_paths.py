"""Relative paths mean "where I started the command", whatever Hydra does with the working
directory: `mlcycle train` as a subprocess, started in a folder that is not the project root,
with a relative data file and relative sqlite stores, hydra.job.chdir true and false, and a
multirun."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from mlcycle.core.datasets import generate_sessions
from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow
TINY = ["data=csv", "data.path=my.csv", "data.target=purchased", "data.drop_columns=[session_id]",
        "model=logistic_regression", "tune.n_trials=2", "tune.cv_folds=2", "evaluate.plots=false", "report.enabled=false"]


@pytest.fixture
def start(tmp_path, template_store) -> Path:
    """The folder the user starts from: their CSV and (a copy of a migrated) store."""
    work = tmp_path / "work"
    work.mkdir()
    generate_sessions(300, 0, 0.0).to_csv(work / "my.csv", index=False)
    shutil.copy(template_store, work / "env.db")
    shutil.copy(template_store, work / "cfg.db")
    return work


def train(start: Path, root: Path, *args: str, tracking_uri: str | None) -> subprocess.CompletedProcess:
    env = subprocess_env(tracking_uri or "", root)
    if tracking_uri is None:
        env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.run([sys.executable, "-m", "mlcycle", "train", *args, *TINY],
                          capture_output=True, text=True, env=env, cwd=start, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def finished_pipelines(db: Path, data_file: Path) -> int:
    """Root runs in the store, each with all its stages FINISHED and the file it read."""
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    roots = [r for r in runs if r.data.tags.get("mlcycle.run_kind") == "pipeline"]
    for root in roots:
        stages = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == root.info.run_id]
        assert sorted(s.info.run_name for s in stages) == sorted(STAGES)
        assert root.data.params["data.path"] == str(data_file)
        assert root.data.tags["mlcycle.data_source"] == str(data_file)
    return len(roots)


def stores_under(root: Path) -> list[Path]:
    return list(root.rglob("*.db"))


def test_relative_paths_resolve_against_the_start_directory(start, tmp_path):
    root = tmp_path / "root"  # MLCYCLE_ROOT: Hydra's outputs/ go here, not into `start`
    train(start, root, "hydra.job.chdir=false", tracking_uri="sqlite:///env.db")
    train(start, root, "hydra.job.chdir=true", tracking_uri="sqlite:///env.db")
    train(start, root, "hydra.job.chdir=true", "mlflow.tracking_uri=sqlite:///cfg.db",
          "tune.storage=sqlite:///study.db", tracking_uri=None)

    assert finished_pipelines(start / "env.db", start / "my.csv") == 2
    assert finished_pipelines(start / "cfg.db", start / "my.csv") == 1
    assert (start / "study.db").is_file()  # the Optuna study, where the user said
    assert len(list((root / "outputs").glob("*/*"))) == 3
    assert stores_under(root) == []  # nothing landed in Hydra's run directories


def test_multirun_with_chdir_finds_the_data_and_the_store(start, tmp_path):
    root = tmp_path / "root"
    train(start, root, "-m", "seed=1,2", "hydra.job.chdir=true", tracking_uri="sqlite:///env.db")

    assert finished_pipelines(start / "env.db", start / "my.csv") == 2
    assert sorted(p.name for p in (root / "multirun").glob("*/*/*") if p.is_dir()) == ["0", "1"]
    assert stores_under(root) == []  # nothing landed in Hydra's run directories
