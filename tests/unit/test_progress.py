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


def _read(leader: int, until, timeout: float = 60.0) -> str:
    """What was drawn on the pty until ``until(text)`` holds or ``timeout`` seconds passed."""
    import select
    import time

    text, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            text += os.read(leader, 65536)
            if until(text.decode()):
                break
    return text.decode()


def _frames(text: str) -> list[str]:
    return [f.replace("\x1b[K", "") for f in text.split("\r") if f.startswith("tune [")]


def test_the_clock_and_the_running_trial_move_while_no_trial_finishes():
    """Nothing finishes, yet the bar is redrawn: the elapsed time and the running trial's
    time change (the old bar drew only when a trial ended)."""
    import re
    import time

    def clocks(text: str) -> set[str]:  # the elapsed field of each frame that shows running trials
        return {m.group(1) for f in _frames(text) if (m := re.search(r"best 0\.7000  (\d+:\d\d)  running", f))}

    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        bar = TrialProgress(True, stream=stream)
        bar.start(3)
        bar.update("COMPLETE", 0.7, number=0)
        bar.trial_started(1, time.time())
        bar.trial_started(2, time.time() - 65)  # a second trial, running for a minute already
        text = _read(leader, lambda text: len(clocks(text)) >= 3)
        bar.close()
        text += _read(leader, lambda text: False, timeout=1.5)  # anything drawn after closing
    os.close(leader)
    assert len(clocks(text)) >= 3, _frames(text)  # the elapsed field changed at least twice
    last = _frames(text)[-1]
    assert last.startswith("tune [########----------------] 1/3  ok 1  pruned 0  failed 0  best 0.7000  ")
    assert re.search(r"running #1 \d+:\d\d #2 1:\d\d$", last), last
    assert text.endswith("\n")  # the refresh thread stopped with the bar: nothing after its last line


def test_a_finished_trial_leaves_the_running_list():
    bar = TrialProgress(False, enabled=False)
    bar.start(2)
    bar.trial_started(0)
    bar.trial_started(1)
    bar.update("PRUNED", None, number=0)
    assert list(bar.running) == [1]
    assert bar.line().endswith("running #1 0:00")
    bar.update("COMPLETE", 1.5, number=1)
    assert "running" not in bar.line()
