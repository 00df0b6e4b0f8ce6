"""The tune progress bar of a real `mlcycle train` in a real (pseudo-)terminal: it moves while
a long trial runs, not only when a trial ends; piped to a file it draws nothing."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow

# One trial of several seconds (a forest on 8,000 rows), and no stage after tune.
LONG_TRIAL = [
    "data.n_rows=8000", "model=random_forest", "model.classifier.params.n_estimators=300",
    "tune.n_trials=1", "tune.cv_folds=2", "stages=[ingest,preprocess,features,tune]",
]
FRAME = re.compile(r"tune \[[#-]+\] (\d+)/1 .* best \S+  (\d+:\d\d)(?:  running #0 (\d+:\d\d))?")


def run_in_terminal(cmd: list[str], env: dict, cwd, timeout: float = 900) -> tuple[int, str]:
    """Run ``cmd`` with stdin, stdout and stderr on a 200-column pseudo-terminal; all it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(), out.decode(errors="replace")


def test_the_bar_moves_during_one_long_trial(store, tmp_path):
    cmd = [sys.executable, "-m", "mlcycle", "train", *LONG_TRIAL]
    code, out = run_in_terminal(cmd, subprocess_env(store, tmp_path), tmp_path)
    assert code == 0, out[-3000:]
    frames = [m for f in re.split(r"[\r\n]", out) if (m := FRAME.search(f))]
    during = [m for m in frames if m.group(1) == "0"]  # drawn while the only trial ran
    assert len({m.group(2) for m in during}) >= 3, out[-3000:]  # the elapsed field changed twice or more
    assert len({m.group(3) for m in during if m.group(3)}) >= 2  # and so did the trial's own time
    assert frames[-1].group(1) == "1" and frames[-1].group(3) is None  # done: nothing left running

    # not a terminal: no bar at all
    quick = [sys.executable, "-m", "mlcycle", "train", "data.n_rows=600", "model=logistic_regression",
             "tune.n_trials=2", "tune.cv_folds=2", "stages=[ingest,preprocess,features,tune]"]
    piped = subprocess.run(quick, capture_output=True, text=True, env=subprocess_env(store, tmp_path), cwd=tmp_path,
                           timeout=600)
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "tune [" not in piped.stderr + piped.stdout
