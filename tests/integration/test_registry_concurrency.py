"""Concurrent promotions from separate processes against one real store: the best model must
end as champion, and the audit trail must show the moves one after another (each promotion
starts from the champion the previous one left), which only a working lock can produce."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from mlcycle.tracking import registry
from tests.conftest import subprocess_env
from tests.integration.registry_helpers import (
    NAME,
    NO_GUARDS,
    WEAK,
    base_run,
    fit_variant,
    metrics_on_test,
    register_variant,
)

C_VALUES = (0.001, 0.03, 1.0)


# Each process imports everything first, then waits for the start file: all of them then run
# the real `mlcycle promote` at the same moment, so their read-compare-set windows overlap.
STARTER = """
import os, sys, time
import mlflow, sklearn, skops.io, hydra
import mlcycle.commands.promote, mlcycle.tracking.registry
from mlcycle.cli import main
open(sys.argv[1] + ".ready-" + str(os.getpid()), "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
sys.exit(main(sys.argv[2:]))
"""


def promote_concurrently(store_uri, root, versions, extra=()):
    env = subprocess_env(store_uri, root)
    start = root / "start"
    script = root / "starter.py"
    script.write_text(STARTER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), "promote", "--version", v, *NO_GUARDS, *extra],
            env={**env, "MLCYCLE_USER": f"proc-{v}"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for v in versions
    ]
    deadline = time.monotonic() + 240
    while len(list(root.glob("start.ready-*"))) < len(procs) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a promote process died before the start"
        time.sleep(0.05)
    start.touch()
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for rc, out, err in results:
        assert rc in (0, 3), f"promote failed (rc={rc}): {out}{err}"
    return results


def check_serialized(client, auc_by_version):
    best = max(auc_by_version.values())
    champion = registry.alias_version(client, NAME, "champion")
    assert auc_by_version[champion] == pytest.approx(best), f"champion {champion} is not the best: {auc_by_version}"
    history = [e for e in registry.history(client, NAME) if e["alias"] == "champion"]
    assert len(history) == 1 + len(auc_by_version) - 1  # the first promotion + one entry per process
    # serialized: every gate ran against the champion the previous move left behind
    current = history[0]["to"]
    for entry in history[1:]:
        assert entry["from"] == current, f"two promotions read the same champion: {history}"
        current = entry["to"]
        gate = entry["gate"]
        if gate["checks"]:
            improvement = next(c for c in gate["checks"] if c["kind"] == "improvement")
            assert improvement["champion"] == pytest.approx(auc_by_version[entry["from"]])
    assert current == champion


def race(tiny_cfg, store_uri, root):
    """Register variants, then promote them all at once from separate processes."""
    result = base_run(tiny_cfg, *WEAK)
    auc = {"1": result.state.test_metrics["roc_auc"]}
    versions = []
    for c in C_VALUES:
        model = fit_variant(result, C=c)
        version = register_variant(result, model)
        auc[version] = metrics_on_test(result, model)["roc_auc"]
        versions.append(version)
    promote_concurrently(store_uri, root, versions)
    check_serialized(MlflowClient(), auc)


@pytest.mark.slow
def test_concurrent_promotions_in_separate_processes_leave_the_best_model_champion(tiny_cfg, store, tmp_path):
    race(tiny_cfg, store, tmp_path)
    assert os.path.exists(str(store.removeprefix("sqlite:///")) + f".registry-{NAME}.lock")


@pytest.fixture
def pg_store(store, tmp_path, monkeypatch):
    """A fresh PostgreSQL database as the tracking store (dropped afterwards)."""
    import secrets

    import mlflow
    from sqlalchemy import create_engine, make_url, text

    base = make_url(os.environ["MLCYCLE_TEST_POSTGRES_URI"])
    name = f"mlcycle_test_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    uri = base.set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


POSTGRES = pytest.mark.skipif(not os.environ.get("MLCYCLE_TEST_POSTGRES_URI"), reason="MLCYCLE_TEST_POSTGRES_URI not set")


@pytest.mark.slow
@pytest.mark.postgres
@POSTGRES
def test_concurrent_promotions_on_a_postgres_store_use_the_advisory_lock(tiny_cfg, pg_store, tmp_path):
    from mlcycle.config.registry import LockConfig
    from mlcycle.tracking.locks import resolve

    assert resolve(pg_store, LockConfig(), NAME)[0].value == "postgres"
    race(tiny_cfg, pg_store, tmp_path)
    assert not list(tmp_path.rglob("*.lock"))  # no file lock was involved


@pytest.mark.postgres
@POSTGRES
def test_advisory_lock_excludes_a_second_holder_and_frees_on_exit():
    import threading

    from mlcycle.config.registry import LockBackend, LockConfig
    from mlcycle.tracking.locks import RegistryLockTimeout, registry_lock

    uri = os.environ["MLCYCLE_TEST_POSTGRES_URI"]
    cfg = LockConfig(backend=LockBackend.postgres, postgres_uri=uri, timeout=0.5)
    held, release = threading.Event(), threading.Event()

    def holder():
        with registry_lock("http://unused", cfg, "lock-test"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with pytest.raises(RegistryLockTimeout, match="advisory lock"), registry_lock(uri, cfg, "lock-test"):
        pass
    with registry_lock(uri, cfg, "another-model"):  # other models are not blocked
        pass
    release.set()
    thread.join()
    with registry_lock(uri, cfg, "lock-test") as what:
        assert "advisory lock" in what
