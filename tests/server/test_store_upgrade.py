"""A PostgreSQL tracking database written by the previous MLflow (its own venv,
tests/old_mlflow.py), through the real CLI: refused before MLflow opens it; `mlcycle db
upgrade` dumps it (pg_dump, no password on any command line), migrates it and compares row
counts; the dump restores into a database the old MLflow reads; the pipeline then works on
the old history. scripts/server.sh's own path is in test_server_script.py."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import stat
import subprocess
import uuid

import pytest
from mlflow import MlflowClient

from tests.old_mlflow import read_store
from tests.server.harness import TINY, cli

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MLFLOW_VERSION = importlib.metadata.version("mlflow")
COUNT_LINE = re.compile(r"^\s+(\w+)\s+(\d+) (=|!=) (\d+)$")


def fetch(postgres, database: str, sql: str):
    conn = postgres.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


def pg_dump_path() -> str:
    from mlcycle.tracking.store_upgrade import pg_dump_path as found

    return found()


def recording_pg_dump(tmp_path):
    """The real pg_dump behind a wrapper that writes down the command line it was given."""
    record = tmp_path / "pg_dump.argv"
    wrapper = tmp_path / "pg_dump"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n'
        f'[ -n "$PGPASSWORD" ] && echo PGPASSWORD >> "{record}"\nexec "{pg_dump_path()}" "$@"\n'
    )
    wrapper.chmod(0o700)
    return wrapper, record


def test_an_old_postgres_store_is_refused_then_backed_up_migrated_and_counted(
    postgres, old_database, old_mlflow, cli_env, tmp_path
):
    name, uri, summary = old_database
    password = postgres.url.password
    old_revision = fetch(postgres, name, "SELECT version_num FROM alembic_version")
    runs_before = fetch(postgres, name, "SELECT count(*) FROM runs")

    refused = cli(["train", *TINY], cli_env(uri))
    assert refused.returncode == 4, refused.stderr[-3000:]
    [line] = [x for x in refused.stderr.splitlines() if x.strip()]
    assert line.startswith(f"error: tracking store postgresql+psycopg2://{postgres.url.username}:***@")
    assert f"was written by an older MLflow (schema {old_revision}" in line
    assert "run 'mlcycle db upgrade' on it (it backs up first)" in line and password not in line
    assert fetch(postgres, name, "SELECT version_num FROM alembic_version") == old_revision
    assert fetch(postgres, name, "SELECT count(*) FROM runs") == runs_before

    wrapper, record = recording_pg_dump(tmp_path)
    backups = tmp_path / "backups"
    done = cli(["db", "upgrade", "--backup-dir", str(backups)], cli_env(uri, MLCYCLE_PG_DUMP=str(wrapper)))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert password not in done.stdout + done.stderr
    argv = record.read_text().splitlines()
    assert "PGPASSWORD" in argv and not any(password in arg for arg in argv)  # env, not argv
    [dump] = backups.iterdir()
    assert re.fullmatch(rf"{name}-\d{{8}}-\d{{6}}-schema-{old_revision}-to-mlflow-{re.escape(MLFLOW_VERSION)}\.dump", dump.name)
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    printed = {m[1]: (int(m[2]), m[3], int(m[4])) for m in map(COUNT_LINE.match, done.stdout.splitlines()) if m}
    assert printed["runs"] == (runs_before, "=", runs_before)
    assert printed["model_versions"] == (2, "=", 2) and printed["registered_model_aliases"] == (1, "=", 1)
    assert "counts equal" in done.stdout
    assert fetch(postgres, name, "SELECT version_num FROM alembic_version") != old_revision

    # the dump restores into a database the old MLflow reads: its runs and versions are all there
    restored = f"mlcycle_restored_{uuid.uuid4().hex[:8]}"
    restored_uri = postgres.create_database(restored)
    try:
        url = postgres.url
        pg_restore = subprocess.run(
            [os.path.join(os.path.dirname(pg_dump_path()), "pg_restore"), "--no-owner", "--no-password",
             "-h", url.host, "-p", str(url.port or 5432), "-U", url.username, "-d", restored, str(dump)],
            env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True, timeout=300,
        )
        assert pg_restore.returncode == 0, pg_restore.stderr
        old_reads = read_store(old_mlflow, restored_uri, tmp_path)
        assert old_reads.returncode == 0, old_reads.stderr[-2000:]
        assert json.loads(old_reads.stdout)["run_ids"] == summary["run_ids"]
    finally:
        postgres.drop_database(restored)

    train = cli(["train", *TINY, "evaluate.plots=false"], cli_env(uri))
    assert train.returncode == 0, train.stderr[-3000:]
    client = MlflowClient(uri)
    old_ids = [client.get_experiment_by_name(n).experiment_id for n in summary["experiments"]]
    assert sorted(r.info.run_id for r in client.search_runs(old_ids, max_results=1000)) == summary["run_ids"]
    assert sorted(int(v.version) for v in client.search_model_versions("name='old-model'")) == summary["versions"]
    assert int(client.get_model_version_by_alias("old-model", "champion").version) == int(summary["champion"])


def test_db_upgrade_refuses_a_postgres_database_another_session_is_using(
    postgres, old_database, cli_env, tmp_path
):
    name, uri, _ = old_database
    old_revision = fetch(postgres, name, "SELECT version_num FROM alembic_version")
    other = postgres.connect(name)  # an mlflow server or a pipeline would hold one
    try:
        done = cli(["db", "upgrade", "--backup-dir", str(tmp_path / "backups")], cli_env(uri))
    finally:
        other.close()
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "1 other session(s) are connected to" in line and "stop them first" in line
    assert not (tmp_path / "backups").exists()
    assert fetch(postgres, name, "SELECT version_num FROM alembic_version") == old_revision
