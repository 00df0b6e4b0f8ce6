"""Which process owns a run, and whether that process still exists.

Pure (no mlflow). A run records its owner as tags when it starts: host name, pid and the
process's start stamp (Linux: boot id + start time in clock ticks, from /proc). Later, on
the same host, the owner is alive only if a process with that pid exists AND has the same
start stamp: pids are reused, boot ids change on reboot. On another host nothing can be
proved, so ``is_alive`` answers ``None`` (unknown).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

HOST_TAG = "mlcycle.host"
PID_TAG = "mlcycle.pid"
START_TAG = "mlcycle.process_start"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str  # "<boot id>/<start ticks>"; "" where /proc is not available

    def tags(self) -> dict[str, str]:
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), START_TAG: self.start}

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


def current() -> Owner:
    """The calling process."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, process_start(pid))


def from_tags(tags: dict[str, str]) -> Owner | None:
    """The owner recorded in a run's tags, or None when the run carries none."""
    try:
        return Owner(tags[HOST_TAG], int(tags[PID_TAG]), tags.get(START_TAG, ""))
    except (KeyError, ValueError):
        return None


def process_start(pid: int) -> str:
    """A stamp that differs between two processes that had the same pid ("" if unknown)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # field 22 (starttime); the command name (field 2) may hold spaces, so count after ')'
    fields = stat.rsplit(")", 1)[1].split()
    return f"{boot}/{fields[19]}"


def is_alive(owner: Owner) -> bool | None:
    """True/False for a process on this host; None when it ran on another host."""
    if owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _state(owner.pid) == "Z":
        return False  # exited, not yet reaped by its parent
    if not owner.start:
        return True  # pid exists; without a stamp we cannot tell reuse apart
    now = process_start(owner.pid)
    return now == owner.start if now else True


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


# A run's owner as one string, for places that hold a single value (Optuna trial attributes):
# "host:pid:start". The start stamp holds no ':' (a boot id and clock ticks).
def owner_token() -> str:
    """This process as ``host:pid:start``."""
    owner = current()
    return f"{owner.host}:{owner.pid}:{owner.start}"


def owner_is_dead(token: str | None) -> bool | None:
    """True when ``token``'s process is certainly gone, False when it runs, None when this
    host cannot tell (another host, or no token)."""
    parts = token.rsplit(":", 2) if token else []
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    alive = is_alive(Owner(parts[0], int(parts[1]), parts[2]))
    return None if alive is None else not alive
