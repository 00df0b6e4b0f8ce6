"""The previous pinned MLflow, in its own virtual environment, for the schema-upgrade tests.

MLCYCLE_OLD_MLFLOW_VENV names a venv with ``mlflow==2.22.*``, ``sqlalchemy<2.1`` (2.22 fails
to import beside 2.1) and ``psycopg2-binary``; .ci/run builds and caches it. Without it the
tests skip, saying how to build it; under CI (CI=1 or MLCYCLE_REQUIRE_OLD_MLFLOW=1) they fail.
The old MLflow writes its stores itself (tests/fixtures/old_mlflow_store.py) and reads them
back here: no store file is checked in.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

VENV_ENV = "MLCYCLE_OLD_MLFLOW_VENV"
WRITER = Path(__file__).resolve().parent / "fixtures" / "old_mlflow_store.py"
BUILD_HINT = (
    f"{VENV_ENV} is not set: these tests need the previous MLflow in its own venv, e.g. "
    'python3 -m venv .venv-mlflow-old && .venv-mlflow-old/bin/pip install "mlflow==2.22.*" '
    f'"sqlalchemy<2.1" psycopg2-binary, then {VENV_ENV}=$PWD/.venv-mlflow-old (.ci/run does this)'
)

# Read a store with the old MLflow: its runs, the registered versions and the champion.
READER = """
import json, os
from mlflow import MlflowClient
uri = os.environ["MLFLOW_TRACKING_URI"]
client = MlflowClient(uri, registry_uri=uri)
ids = [e.experiment_id for e in client.search_experiments()]
runs = client.search_runs(ids, max_results=1000)
print(json.dumps({
    "run_ids": sorted(r.info.run_id for r in runs),
    "versions": sorted(int(v.version) for v in client.search_model_versions("name='old-model'")),
    "champion": client.get_model_version_by_alias("old-model", "champion").version,
}))
"""


def required() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "MLCYCLE_REQUIRE_OLD_MLFLOW")
    )


def old_python() -> Path:
    """The old venv's python; skips (fails under CI) when there is none."""
    venv = os.environ.get(VENV_ENV)
    python = Path(venv) / "bin" / "python" if venv else None
    if python is None or not python.exists():
        message = BUILD_HINT if not venv else f"{VENV_ENV}={venv} has no bin/python"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    return python


def _env(uri: str) -> dict[str, str]:
    """Nothing of the new environment leaks in: not mlcycle's PYTHONPATH, not its MLflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON", "MLCYCLE_ROOT"))}
    env["MLFLOW_TRACKING_URI"] = uri
    return env


def write_store(python: Path, uri: str, folder: Path) -> dict:
    """An old store at ``uri`` (empty before), artifacts under ``folder``; its summary."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(python), str(WRITER), str(folder / "artifacts")],
        env=_env(uri), cwd=folder, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_store(python: Path, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    """The old MLflow reading ``uri``: JSON on stdout, or its error."""
    return subprocess.run(
        [str(python), "-c", READER], env=_env(uri), cwd=cwd, capture_output=True, text=True, timeout=300
    )
