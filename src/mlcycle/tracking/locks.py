"""The registry lock: serializes read-compare-set of a registered model's aliases.

MLflow's alias update is a blind overwrite, so two pipelines finishing together could each
read the old champion, each pass the gate against it, and the slower writer would crown its
model even if it is the worse one. Every alias move in mlcycle happens inside this lock.

* sqlite store: a file lock (``filelock``) beside the database file, one per registered model;
* PostgreSQL store (``postgresql://`` or ``postgresql+driver://``): a session-level advisory
  lock (``core.locks.AdvisoryLock``) in that database, keyed by the registered model's name;
* HTTP tracking server: the REST API has no lock, so mlcycle takes a PostgreSQL advisory lock
  in ``registry.lock.postgres_uri`` when given (the server's backend database), else a file
  lock under the project root, which serializes only the mlcycle processes that share that
  file (one machine, or a shared filesystem with working locks). Writers that bypass the lock
  are still caught afterwards: the alias is re-read after every move.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mlcycle.config.registry import LockBackend, LockConfig
from mlcycle.core import locks
from mlcycle.core.locks import AdvisoryLock, FileLock, LockTimeout
from mlcycle.errors import MlcycleError


class RegistryLockTimeout(MlcycleError):
    """The registry lock could not be taken in time."""


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def resolve(tracking_uri: str, cfg: LockConfig, model_name: str) -> tuple[LockBackend, str]:
    """Which lock, and where: (backend, file path or database URI)."""
    backend = cfg.backend
    is_pg = tracking_uri.startswith(("postgresql://", "postgresql+", "postgres://"))
    if backend is LockBackend.auto:
        if is_pg or (tracking_uri.startswith(("http://", "https://")) and cfg.postgres_uri):
            backend = LockBackend.postgres
        else:
            backend = LockBackend.file
    if backend is LockBackend.postgres:
        uri = cfg.postgres_uri or (tracking_uri if is_pg else None)
        if not uri:
            raise MlcycleError(
                f"registry.lock.backend=postgres needs a PostgreSQL store or registry.lock.postgres_uri "
                f"(tracking store is {tracking_uri})"
            )
        return backend, uri
    if backend is LockBackend.file:
        return backend, str(cfg.path or default_lock_path(tracking_uri, model_name))
    return backend, ""


def default_lock_path(tracking_uri: str, model_name: str) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return db.with_name(f"{db.name}.registry-{_safe(model_name)}.lock")
    from mlcycle.config.load import project_root

    return project_root() / ".mlcycle" / f"registry-{_safe(model_name)}.lock"


@contextlib.contextmanager
def registry_lock(tracking_uri: str, cfg: LockConfig, model_name: str) -> Iterator[str]:
    """Hold the lock for ``model_name``; yields a description of the lock held."""
    backend, where = resolve(tracking_uri, cfg, model_name)
    if backend is LockBackend.none:
        yield "no lock"
    elif backend is LockBackend.file:
        with _file_lock(Path(where), cfg.timeout):
            yield f"file lock {where}"
    else:
        with _advisory_lock(where, model_name, cfg.timeout):
            yield f"PostgreSQL advisory lock {advisory_key(model_name)}"


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    with _held(FileLock(path), timeout, f"registry lock {path}"):
        yield


def advisory_key(model_name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return locks.advisory_key(_advisory_name(model_name))


def _advisory_name(model_name: str) -> str:
    return f"mlcycle.registry:{model_name}"


@contextlib.contextmanager
def _advisory_lock(uri: str, model_name: str, timeout: float) -> Iterator[None]:
    """Session-level advisory lock on a dedicated connection (released on unlock or when the
    connection closes, so a killed process cannot leave it held)."""
    what = f"registry advisory lock {advisory_key(model_name)} ({model_name})"
    with _held(AdvisoryLock(uri, _advisory_name(model_name)), timeout, what):
        yield


@contextlib.contextmanager
def _held(lock: AdvisoryLock | FileLock, timeout: float, what: str) -> Iterator[None]:
    with lock:
        try:
            lock.acquire(timeout)
        except LockTimeout:
            raise RegistryLockTimeout(f"timed out after {timeout:g} s waiting for the {what}") from None
        yield
