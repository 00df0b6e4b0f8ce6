"""Shared fixtures: every test gets its own real MLflow store (never a mock).

A fresh sqlite store costs seconds to create (all migrations run), so one migrated
template is made per session and copied for each test that needs a store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Overrides that make a full pipeline run take seconds.
TINY = [
    "data.n_rows=600",
    "model=logistic_regression",
    "tune.n_trials=3",
    "tune.cv_folds=2",
    "evaluate.plots=true",
]


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # runs the migrations once
    return path


@pytest.fixture(scope="session")
def old_mlflow() -> Path:
    """The previous MLflow's python (tests/old_mlflow.py: skipped without it, failed in CI)."""
    from tests.old_mlflow import old_python

    return old_python()


@pytest.fixture(scope="session")
def old_store_template(old_mlflow, tmp_path_factory) -> tuple[Path, dict]:
    """A sqlite store written by the previous MLflow (once per session; copy it, never open
    it with this MLflow: that migrates it) and the summary of what it holds."""
    from tests.old_mlflow import write_store

    folder = tmp_path_factory.mktemp("old-store")
    return folder / "mlflow.db", write_store(old_mlflow, f"sqlite:///{folder / 'mlflow.db'}", folder)


@pytest.fixture
def store(tmp_path, template_store, monkeypatch) -> Iterator[str]:
    """A private sqlite tracking store; MLFLOW_TRACKING_URI and MLCYCLE_ROOT point at it."""
    yield from private_store(tmp_path, template_store, monkeypatch)


def private_store(root: Path, template_store: Path, monkeypatch) -> Iterator[str]:
    """Copy the migrated template into ``root`` and point MLflow and mlcycle at it."""
    db = root / "mlflow.db"
    shutil.copy(template_store, db)
    yield from tracking_at(f"sqlite:///{db}", root, monkeypatch)


def tracking_at(uri: str, root: Path, monkeypatch) -> Iterator[str]:
    """Point MLflow and mlcycle (in this process and its children) at the store ``uri``;
    afterwards end any run left active and forget the URI."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLCYCLE_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def compose(overrides: list[str] | None = None):
    """The project's real config, composed with overrides, as typed dataclasses."""
    from mlcycle.config.load import compose as compose_config

    return compose_config(list(overrides or []))


@pytest.fixture
def tiny_cfg(store):
    """A config for a seconds-long run against the test's private store."""
    return lambda *extra: compose([*TINY, *extra])


def subprocess_env(store_uri: str, root: Path) -> dict[str, str]:
    """Environment for running the CLI in a subprocess against a private store."""
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=store_uri,
        MLCYCLE_ROOT=str(root),
        PATH=f"{Path(os.sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
    )
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(var, None)
    return env


def venv_python(variable: str, hint: str) -> str:
    """The interpreter of the virtual environment ``$variable`` names; the test is skipped,
    saying ``hint``, when it is not set or has no python (Airflow, KFP, Spark live apart)."""
    venv = os.environ.get(variable)
    python = Path(venv or "-") / "bin" / "python"
    if not venv or not python.exists():
        pytest.skip(f"set {variable} to {hint}")
    return str(python)


def orchestration_facts(path: Path) -> tuple[set[str], dict]:
    """What an orchestration file imports (top-level module names) and its ``EXIT_CODES``
    literal, read without importing it (its orchestrator may not be installed here)."""
    import ast

    tree = ast.parse(path.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    codes = next(
        ast.literal_eval(n.value) for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "EXIT_CODES" for t in n.targets)
    )
    return {m.split(".")[0] for m in imported if m}, codes


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to a server's whole process group (started with ``start_new_session=True``),
    SIGKILL when it has not exited after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def typed_sessions(n_rows: int):
    """The default generator's rows as ingest and features see them (for tuning tests that
    build an objective without a pipeline): the config, schema, typed frame, derived
    features and feature plan."""
    from mlcycle.core.data import infer_schema
    from mlcycle.core.datasets import generate_sessions
    from mlcycle.core.features import plan_features

    cfg = compose([f"data.n_rows={n_rows}"])
    schema, typed = infer_schema(generate_sessions(n_rows, 1), cfg.data, "test")
    derived = dict(cfg.data.derived_features)
    plan = plan_features(typed, schema.numeric, schema.categorical, schema.datetime, derived, 12)
    return cfg, schema, typed, derived, plan
