"""Locks between processes and machines. Pure: no mlflow, no hydra.

* ``AdvisoryLock``: a session-level PostgreSQL advisory lock on a connection of its own.
  PostgreSQL releases it when that connection closes, so a killed process cannot leave it
  held. The registry lock (``tracking.locks``) and the tuning locks (``core.tuning.storage``:
  first-time schema creation, claiming a trial) are this lock under different names.
* ``FileLock``: a lock file with the same interface (one machine, or a shared filesystem
  with working locks).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path


class LockTimeout(TimeoutError):
    """The lock could not be taken in time."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """``acquire`` waits in PostgreSQL's lock queue (taken the moment the holder releases),
    at most ``timeout`` seconds (None: no limit); ``release`` may be called when not held.
    The connection stays open between acquisitions until ``close``."""

    def __init__(self, uri: str, name: str):
        self.uri, self.name, self.key = uri, name, advisory_key(name)
        self._engine = self._conn = None
        self.held = False

    def acquire(self, timeout: float | None = None) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        if self._conn is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine = create_engine(self.uri, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            self._conn = self._engine.connect()
        if timeout is not None and timeout <= 0:
            self.held = bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        else:
            wait_ms = 0 if timeout is None else max(1, int(timeout * 1000))  # 0 = wait as long as it takes
            self._conn.execute(text(f"SET lock_timeout = {wait_ms}"))
            try:
                self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                self.held = True
            except OperationalError as exc:
                if getattr(exc.orig, "pgcode", None) != "55P03":  # lock_not_available
                    raise
        if not self.held:
            raise LockTimeout(f"timed out after {timeout:g} s waiting for the advisory lock {self.key} ({self.name})")

    def release(self) -> None:
        if self.held:
            self.held = False
            from sqlalchemy import text

            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})

    def close(self) -> None:
        try:
            self.release()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._engine.dispose()
                self._engine = self._conn = None

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileLock:
    """A lock file with ``AdvisoryLock``'s interface (the operating system drops it with the
    process). Separate instances exclude each other, also in one process."""

    def __init__(self, path: Path):
        import filelock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = filelock.FileLock(str(path), thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, timeout: float | None = None) -> None:
        import filelock

        try:
            self._lock.acquire(timeout=-1 if timeout is None else timeout)
        except filelock.Timeout:
            raise LockTimeout(f"timed out after {timeout:g} s waiting for the lock {self.path}") from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def close(self) -> None:
        self.release()

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def holding(lock: AdvisoryLock | FileLock, timeout: float | None) -> Iterator[AdvisoryLock | FileLock]:
    """Hold ``lock`` for the block (``LockTimeout`` if it cannot be taken in time)."""
    with lock:
        lock.acquire(timeout)
        yield lock
