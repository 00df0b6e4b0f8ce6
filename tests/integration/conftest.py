"""Integration fixtures: Optuna storages that several processes can share (tuning tests)."""

from __future__ import annotations

import os
import uuid

import pytest

PG_ENV = "MLCYCLE_TEST_POSTGRES_URI"


@pytest.fixture
def postgres_storage():
    """A fresh PostgreSQL database for one study (Optuna and MLflow must not share one:
    both keep an alembic_version table); dropped afterwards."""
    uri = os.environ.get(PG_ENV)
    if not uri:
        pytest.skip(f"{PG_ENV} is not set")
    import sqlalchemy

    admin = sqlalchemy.create_engine(uri, isolation_level="AUTOCOMMIT")
    name = f"mlcycle_optuna_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield sqlalchemy.make_url(uri).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_storage(request, tmp_path):
    if request.param == "journal":
        return f"journal://{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres_storage")
