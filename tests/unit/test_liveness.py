"""Owner tags tell a live process from a dead one, a reused pid and another host (real processes)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mlcycle.core import liveness


def test_current_process_is_alive_and_round_trips_through_tags():
    me = liveness.current()
    assert me.pid > 0 and me.host
    assert liveness.from_tags(me.tags()) == me
    assert liveness.is_alive(me) is True


def test_a_process_that_exited_is_dead_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = replace(liveness.current(), pid=child.pid, start=liveness.process_start(child.pid))
        assert liveness.is_alive(owner) is True
        child.kill()
        # not reaped yet: a zombie still has a pid, but it is not running anything
        for _ in range(100):
            if liveness.is_alive(owner) is False:
                break
            time.sleep(0.05)
        assert liveness.is_alive(owner) is False
    finally:
        child.kill()
        child.wait()
    assert liveness.is_alive(owner) is False  # reaped: no such pid


@pytest.mark.skipif(not liveness.process_start(1), reason="needs Linux /proc")
def test_a_reused_pid_is_not_the_recorded_owner():
    me = liveness.current()
    other = replace(me, start=me.start.split("/")[0] + "/1")  # same pid, another start time
    assert liveness.is_alive(other) is False


def test_another_host_cannot_be_judged():
    assert liveness.is_alive(replace(liveness.current(), host="some-other-host")) is None


def test_runs_without_owner_tags_have_no_owner():
    assert liveness.from_tags({}) is None
    assert liveness.from_tags({liveness.HOST_TAG: "h", liveness.PID_TAG: "not-a-pid"}) is None
