"""orchestration/kfp_pipeline.py: checked without KFP always; compiled and run WITH KFP
(its local runner, scripts/check_kfp_pipeline.sh) when MLCYCLE_KFP_VENV points at a virtual
environment that has kfp and this checkout's mlcycle (.ci/run makes one)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, orchestration_facts, venv_python

PIPELINE_FILE = PROJECT_ROOT / "orchestration" / "kfp_pipeline.py"
SHIPPED = ("kfp_pipeline.yaml", "kfp_big_study.yaml")


def kfp_python() -> str:
    return venv_python("MLCYCLE_KFP_VENV", "a virtual environment with kfp and mlcycle (scripts/kfp_venv.sh)")


def test_pipeline_file_needs_no_mlcycle_import_and_agrees_on_exit_codes():
    from mlcycle.monitoring.monitor import EXIT_CODES

    imported, codes = orchestration_facts(PIPELINE_FILE)
    assert "mlcycle" not in imported  # KFP may live elsewhere
    assert codes == EXIT_CODES
    # the monitor component accepts exactly the verdicts' exit codes
    assert "if code not in (0, 10, 11):" in PIPELINE_FILE.read_text()
    assert sorted(EXIT_CODES.values()) == [0, 10, 11]


def test_shipped_yaml_is_what_the_pipeline_compiles_to(tmp_path):
    """`make kfp-compile` output is committed; compiling again gives the same files."""
    env = {k: v for k, v in os.environ.items() if k != "MLCYCLE_KFP_IMAGE"}  # the default image
    proc = subprocess.run(
        [kfp_python(), str(PIPELINE_FILE), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in SHIPPED:
        shipped = (PROJECT_ROOT / "orchestration" / name).read_text()
        assert (tmp_path / name).read_text() == shipped, f"orchestration/{name} is stale: run `make kfp-compile`"


@pytest.mark.kfp
@pytest.mark.slow
def test_pipelines_run_end_to_end_with_the_kfp_local_runner():
    python = kfp_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLCYCLE_ROOT", "MLCYCLE_TUNE"))}
    proc = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "check_kfp_pipeline.sh"), str(Path(python).parents[1])],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "decay -> retrain root run" in proc.stdout and ": ok" in proc.stdout
    assert "OK: both KFP pipelines ran" in proc.stdout
