"""Owner tokens: a dead process on this host is recognised, a live one or another host's is not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlcycle.core.liveness import owner_is_dead, owner_token


def test_this_process_is_alive():
    token = owner_token()
    host, pid, start = token.rsplit(":", 2)
    assert host == socket.gethostname() and int(pid) == os.getpid() and start
    assert owner_is_dead(token) is False


def test_a_finished_process_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "from mlcycle.core.liveness import owner_token; print(owner_token())"], stdout=subprocess.PIPE, text=True)
    token = child.communicate()[0].strip()
    assert token.split(":")[1] == str(child.pid)
    assert owner_is_dead(token) is True


def test_a_reused_pid_is_not_the_owner():
    host, pid, start = owner_token().rsplit(":", 2)
    assert owner_is_dead(f"{host}:{os.getppid()}:{start}1") is True  # alive pid, other start time


def test_a_zombie_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "from mlcycle.core.liveness import owner_token; print(owner_token(), flush=True)"], stdout=subprocess.PIPE, text=True)
    token = child.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)  # exited, not yet reaped
    assert owner_is_dead(token) is True
    child.wait()


def test_other_hosts_and_garbage_are_unknown():
    assert owner_is_dead(f"not-{socket.gethostname()}:1:1") is None
    assert owner_is_dead(None) is None
    assert owner_is_dead("garbage") is None
