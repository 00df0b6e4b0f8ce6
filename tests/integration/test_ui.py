"""The MLflow UI opens on the runs, not on MLflow 3's GenAI overview.

A real `mlcycle train` (the console script, in a subprocess) prints where to look; `mlcycle
ui` serves that store; headless Chromium with an empty profile (no stored view preference,
so MLflow's default, GenAI, applies) loads the printed link. The same links without the
view parameter show the GenAI pages: the markers below can fail.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.config.load import source_checkout
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, NO_CHROMIUM
from tests.conftest import TINY, stop_group, subprocess_env
from tests.server.harness import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]

BIN = Path(sys.executable).parent
GENAI = "Detect Issues"  # the GenAI overview's button (and its pop-up)
GENAI_RUN = "Evaluation runs"  # the GenAI side bar of a run page
ML_VIEW = "Model registry"  # the classic side bar's link to the registry


def dom(url: str, profile: Path) -> str:
    """The page after its scripts ran, in a fresh profile."""
    done = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@contextlib.contextmanager
def mlcycle_ui(store: str, root: Path) -> Iterator[tuple[int, str]]:
    """`mlcycle ui` on a free port for the store; yields (port, the line it printed first)."""
    port, log = free_port(), root / "ui.log"
    with log.open("w") as out:  # a file, not a pipe: the server's log must never block it
        process = subprocess.Popen([str(BIN / "mlcycle"), "ui", "--port", str(port)], env=subprocess_env(store, root),
                                   cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return process.poll() is not None  # exited: stop waiting, the test says why

        wait_for(healthy, 300, f"mlcycle ui on port {port}", interval=1)
        assert process.poll() is None, f"mlcycle ui exited: {log.read_text()[-2000:]}"
        yield port, log.read_text().splitlines()[0]
    finally:
        stop_group(process, timeout=60)


def test_the_printed_links_open_the_runs_table_and_the_run_page(store, tmp_path):
    done = subprocess.run(
        [str(BIN / "mlcycle"), "train", *TINY, "evaluate.plots=false"],
        env=subprocess_env(store, tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = re.search(r"^mlcycle: run ([0-9a-f]{32}) finished", done.stdout, re.M).group(1)
    browse = re.search(r"^  browse: (.+), then (\S+)$", done.stdout, re.M)
    assert browse, done.stdout
    # run from elsewhere than the checkout, on the store `mlcycle ui` opens by default
    assert browse.group(1) == f"make -C {source_checkout()} ui"
    printed = browse.group(2)
    assert re.fullmatch(rf"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/{run_id}\?workflowType=machine_learning", printed)

    with mlcycle_ui(store, tmp_path) as (port, first):
        experiment = re.fullmatch(r"experiment 'mlcycle': (http://127\.0\.0\.1:\d+/#/experiments/\d+\?workflowType=machine_learning)", first)
        assert experiment, first
        assert experiment.group(1).startswith(f"http://127.0.0.1:{port}/")
        run_page = printed.replace("http://127.0.0.1:5000", f"http://127.0.0.1:{port}", 1)  # the test's port

        table = dom(experiment.group(1), tmp_path / "p1")
        assert "lr-ecommerce" in table  # the root run, in the runs table
        assert GENAI not in table and ML_VIEW in table

        page = dom(run_page, tmp_path / "p2")
        assert ML_VIEW in page and GENAI_RUN not in page
        assert run_id in page and "logistic_regression" in page  # its description: model ...
        assert "/artifacts/report.html?workflowType=machine_learning" in page  # ... and a link to the report

        # without the parameter, the same pages open in the GenAI view
        assert GENAI in dom(experiment.group(1).split("?")[0], tmp_path / "p3")
        assert GENAI_RUN in dom(run_page.split("?")[0], tmp_path / "p4")
