"""Which registry lock is used for which store, and that the file lock excludes and times out."""

from __future__ import annotations

import threading

import pytest

from mlcycle.config.registry import LockBackend, LockConfig
from mlcycle.errors import MlcycleError
from mlcycle.tracking.locks import RegistryLockTimeout, advisory_key, registry_lock, resolve


def test_lock_follows_the_tracking_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCYCLE_ROOT", str(tmp_path))
    auto = LockConfig()
    assert resolve("sqlite:////data/mlflow.db", auto, "m") == (LockBackend.file, "/data/mlflow.db.registry-m.lock")
    pg = "postgresql+psycopg2://u@db:5432/mlflow"
    assert resolve(pg, auto, "m") == (LockBackend.postgres, pg)
    assert resolve("http://tracking:5000", auto, "a/b") == (LockBackend.file, str(tmp_path / ".mlcycle" / "registry-a_b.lock"))
    assert resolve("http://tracking:5000", LockConfig(postgres_uri=pg), "m") == (LockBackend.postgres, pg)
    assert resolve("sqlite:////x.db", LockConfig(path="/shared/r.lock"), "m") == (LockBackend.file, "/shared/r.lock")
    with pytest.raises(MlcycleError, match="needs a PostgreSQL store or registry.lock.postgres_uri"):
        resolve("http://tracking:5000", LockConfig(backend=LockBackend.postgres), "m")
    assert advisory_key("m") == advisory_key("m") != advisory_key("n")
    assert -(2**63) <= advisory_key("m") < 2**63


def test_file_lock_excludes_a_second_holder_and_times_out(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = LockConfig(timeout=0.3)
    held, release = threading.Event(), threading.Event()

    def holder():
        with registry_lock(uri, cfg, "m"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with pytest.raises(RegistryLockTimeout, match=r"timed out after 0.3 s waiting for the registry lock .*mlflow.db.registry-m.lock"), registry_lock(uri, cfg, "m"):
        pass
    release.set()
    thread.join()
    with registry_lock(uri, cfg, "m") as what:
        assert what.startswith("file lock ")
