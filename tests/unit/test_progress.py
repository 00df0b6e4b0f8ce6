"""The trial progress bar draws in a terminal and stays silent in logs."""

from __future__ import annotations

import io
import os
import pty

from mlcycle.core.progress import TrialProgress


def test_silent_when_not_a_terminal():
    out = io.StringIO()
    bar = TrialProgress(True, stream=out)
    bar.start(3)
    bar.update("COMPLETE", 0.7)
    bar.close()
    assert not bar.enabled and out.getvalue() == ""


def test_draws_counts_and_best_in_a_real_terminal():
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        bar = TrialProgress(True, stream=stream, width=10)
        assert bar.enabled
        bar.start(4, already_done=2)
        for state, value in [("COMPLETE", 0.71), ("PRUNED", None), ("COMPLETE", 0.69), ("FAIL", None)]:
            bar.update(state, value)
        bar.close()
    chunks = []
    while True:  # a pty delivers in pieces; after the writer closed, read until EIO/EOF
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    text = b"".join(chunks).decode()
    last = text.strip().split("\r")[-1]
    assert "tune [##########] 4/4" in last
    assert "ok 2  pruned 1  failed 1  best 0.7100" in last
    assert "(+2 earlier)" in last


def test_minimising_keeps_the_lowest():
    bar = TrialProgress(False, enabled=False)
    for value in (3.0, 1.5, 2.0):
        bar.update("COMPLETE", value)
    assert bar.best == 1.5
