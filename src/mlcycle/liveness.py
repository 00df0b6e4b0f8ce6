"""Who owns a run or a trial, and is that process still alive? Pure: no mlflow, no optuna.

A SIGKILL (or a power cut) leaves MLflow runs RUNNING and Optuna trials RUNNING forever.
Each owner writes a token ``host:pid:start`` (``start`` is the process start time in clock
ticks since boot, from /proc, so a reused pid is not mistaken for the owner). Later, a
process on the same host can tell for sure that the owner is gone; on another host it
cannot, and says so (``None``): those cases are left to heartbeats or to an operator.
"""

from __future__ import annotations

import os
import socket
from functools import cache


@cache
def owner_token() -> str:
    """This process: ``host:pid:start``."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or ''}"


def owner_is_dead(token: str | None) -> bool | None:
    """True when ``token``'s process is certainly gone, False when it runs, None when this
    host cannot tell (another host, or no token)."""
    if not token:
        return None
    parts = token.rsplit(":", 2)
    if len(parts) != 3:
        return None
    host, pid_text, start = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return start != (_start_ticks(pid) or "")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat(pid)
    if fields is None:
        # no /proc on this system (alive, as far as kill() knows), or it ended just now
        return os.path.isdir("/proc/self")
    if fields[0] == "Z":  # a zombie: dead, not yet reaped by its parent
        return True
    return bool(start) and fields[19] != start


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time since boot), or None where there is no /proc."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields if len(fields) > 19 else None
