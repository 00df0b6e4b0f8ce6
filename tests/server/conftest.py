"""Fixtures for the tracking-server tests: real PostgreSQL, real `mlflow server` processes.

PostgreSQL comes from MLCYCLE_TEST_POSTGRES_URI (`.ci/run` and `make test-postgres` start a
cluster and set it). Without it the tests skip, saying how to enable them; under CI
(CI=1 or MLCYCLE_REQUIRE_POSTGRES=1) they fail instead. One migrated template database is made
per session; each server gets a fresh copy of it (CREATE DATABASE ... TEMPLATE, ~0.3 s).
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from mlcycle.core.masking import mask_text
from tests.conftest import subprocess_env, tracking_at
from tests.server.harness import ENABLE_HINT, MLFLOW, POSTGRES_ENV, MlflowServer, Postgres, required


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if required():
            pytest.fail(ENABLE_HINT)
        pytest.skip(ENABLE_HINT)
    pg = Postgres(url)
    try:
        pg.connect().close()
    except Exception as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL does not answer: {mask_text(str(exc))}")
    return pg


@pytest.fixture(scope="session")
def mlflow_template(postgres: Postgres) -> Iterator[str]:
    """A database with MLflow's schema, migrated once (`mlflow db upgrade`, ~10 s)."""
    name = f"mlcycle_tmpl_{os.getpid()}"
    postgres.drop_database(name)
    uri = postgres.create_database(name)
    done = subprocess.run([str(MLFLOW), "db", "upgrade", uri], capture_output=True, text=True)
    assert done.returncode == 0, mask_text(done.stderr[-3000:])
    yield name
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def new_database(postgres: Postgres, mlflow_template: str):
    """Factory: a fresh database; ``mlflow=True`` copies the migrated template."""
    created: list[str] = []

    def make(label: str, mlflow: bool = True) -> str:
        name = f"mlcycle_t_{re.sub(r'[^a-z0-9]', '_', label.lower())[:30]}_{uuid.uuid4().hex[:8]}"
        created.append(name)
        return postgres.create_database(name, template=mlflow_template if mlflow else None)

    yield make
    for name in created:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def old_pg_template(postgres: Postgres, old_mlflow, tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """A database written by the previous MLflow (tests/old_mlflow.py), once per session,
    and the summary of what it holds; tests get copies (``old_database``)."""
    from tests.old_mlflow import write_store

    name = f"mlcycle_old_tmpl_{os.getpid()}"
    postgres.drop_database(name)
    uri = postgres.create_database(name)
    yield name, write_store(old_mlflow, uri, tmp_path_factory.mktemp("old-pg-store"))
    postgres.drop_database(name)


@pytest.fixture
def old_database(postgres: Postgres, old_pg_template, request) -> Iterator[tuple[str, str, dict]]:
    """A fresh copy of the old-MLflow database: (name, URI with password, summary)."""
    template, summary = old_pg_template
    name = f"mlcycle_old_{re.sub(r'[^a-z0-9]', '_', request.node.name.lower())[:24]}_{uuid.uuid4().hex[:8]}"
    yield name, postgres.create_database(name, template=template), summary
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def shared_server(new_database, tmp_path_factory) -> Iterator[MlflowServer]:
    """One server for the tests that do not disturb it; each test uses its own experiment."""
    server = MlflowServer(new_database("shared"), tmp_path_factory.mktemp("shared-server")).start()
    yield server
    server.stop()


@pytest.fixture
def experiment(request) -> str:
    """An experiment (and registered model) name unique to the test."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60] + "-" + uuid.uuid4().hex[:6]


@pytest.fixture
def remote(monkeypatch, tmp_path):
    """Point the in-process pipeline at a tracking server: ``remote(url)``."""
    pointed = []

    def use(url: str) -> str:
        pointed.append(tracking_at(url, tmp_path, monkeypatch))
        return next(pointed[-1])

    yield use
    for store in reversed(pointed):
        next(store, None)  # ends runs left active, forgets the URI


@pytest.fixture
def cli_env(tmp_path):
    """Environment for `mlcycle` subprocesses logging to ``url``."""

    def make(url: str, **extra: str) -> dict[str, str]:
        env = subprocess_env(url, tmp_path)
        env.update(extra)
        return env

    return make
