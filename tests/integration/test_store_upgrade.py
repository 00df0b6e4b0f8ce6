"""A sqlite store written by the previous MLflow (its own venv, tests/old_mlflow.py), through
the real CLI: refused before anything opens it, then `mlcycle db upgrade` backs it up,
migrates it and proves by row counts that nothing was lost; the history stays readable.

Never open an old store with this MLflow's client before the upgrade: that migrates it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, subprocess_env
from tests.old_mlflow import read_store

pytestmark = pytest.mark.slow

MLFLOW_VERSION = importlib.metadata.version("mlflow")
COUNT_LINE = re.compile(r"^\s+(\w+)\s+(\d+) (=|!=) (\d+)$")


def mlcycle(tmp_path, uri, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlcycle", *args], capture_output=True, text=True,
        env=subprocess_env(uri, tmp_path), cwd=tmp_path, timeout=900,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def revision(path: Path) -> str:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def only_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def old_store(old_store_template, tmp_path) -> tuple[Path, dict]:
    template, summary = old_store_template
    db = tmp_path / "mlflow.db"
    shutil.copy(template, db)
    return db, summary


def test_every_command_refuses_a_store_an_older_mlflow_wrote_and_leaves_it_as_it_was(old_store, tmp_path):
    db, _ = old_store
    uri, before, old_revision = f"sqlite:///{db}", digest(db), revision(db)

    train = mlcycle(tmp_path, uri, "train", *TINY)
    assert train.returncode == 4, train.stderr
    assert digest(db) == before  # not migrated (MLflow alone migrates it, silently)
    line = only_error_line(train)
    from mlcycle.tracking.store_schema import head_revision, migrations

    assert old_revision in migrations()  # a revision this MLflow knows: older, not foreign
    assert line == (
        f"error: tracking store {uri} was written by an older MLflow (schema {old_revision}, this "
        f"MLflow {MLFLOW_VERSION} needs {head_revision()}): "
        "run 'mlcycle db upgrade' on it (it backs up first)"
    )
    models = mlcycle(tmp_path, uri, "models")  # any command that opens the store (_common.connect)
    assert models.returncode == 4 and only_error_line(models) == line
    check = mlcycle(tmp_path, uri, "db", "check")
    assert check.returncode == 4 and only_error_line(check) == line

    assert digest(db) == before and revision(db) == old_revision  # not migrated, not touched
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "backups").exists()


def test_db_upgrade_backs_up_migrates_and_counts_then_train_works_on_the_old_history(
    old_store, old_mlflow, tmp_path
):
    db, summary = old_store
    uri, old_revision = f"sqlite:///{db}", revision(db)
    counts = {t: rows(db, t) for t in ("experiments", "runs", "metrics", "model_versions", "registered_model_aliases")}

    done = mlcycle(tmp_path, uri, "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr

    # the backup: before the migration, mode 600, named after the date and both schemas' MLflows
    [backup] = (tmp_path / "backups").iterdir()
    assert re.fullmatch(rf"mlflow-\d{{8}}-\d{{6}}-schema-{old_revision}-to-mlflow-{re.escape(MLFLOW_VERSION)}\.db", backup.name)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert f"backup: {backup}" in done.stdout
    old_reads_backup = read_store(old_mlflow, f"sqlite:///{backup}", tmp_path)
    assert old_reads_backup.returncode == 0, old_reads_backup.stderr[-2000:]
    assert json.loads(old_reads_backup.stdout) == {
        "run_ids": summary["run_ids"], "versions": summary["versions"], "champion": summary["champion"]
    }
    # ... which is what it is for: the old MLflow cannot read the migrated store any more
    old_reads_store = read_store(old_mlflow, uri, tmp_path)
    assert old_reads_store.returncode != 0 and "Can't locate revision" in old_reads_store.stderr

    # the counts, side by side, equal
    printed = {m[1]: (int(m[2]), m[3], int(m[4])) for m in map(COUNT_LINE.match, done.stdout.splitlines()) if m}
    for table, n in counts.items():
        assert printed[table] == (n, "=", n), done.stdout
    assert "counts equal" in done.stdout
    assert revision(db) != old_revision

    again = mlcycle(tmp_path, uri, "db", "upgrade")
    assert again.returncode == 0 and "nothing to upgrade, no backup taken" in again.stdout
    assert len(list((tmp_path / "backups").iterdir())) == 1
    assert mlcycle(tmp_path, uri, "db", "check").returncode == 0

    train = mlcycle(tmp_path, uri, "train", *TINY, "evaluate.plots=false")
    assert train.returncode == 0, train.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    old_ids = [client.get_experiment_by_name(name).experiment_id for name in summary["experiments"]]
    assert sorted(r.info.run_id for r in client.search_runs(old_ids, max_results=1000)) == summary["run_ids"]
    assert sorted(int(v.version) for v in client.search_model_versions("name='old-model'")) == summary["versions"]
    assert int(client.get_model_version_by_alias("old-model", "champion").version) == int(summary["champion"])
    [root] = client.search_runs(
        [client.get_experiment_by_name("mlcycle").experiment_id], "tags.`mlcycle.run_kind` = 'pipeline'"
    )
    assert root.info.status == "FINISHED"


def test_a_migration_that_loses_rows_fails_naming_the_backup_and_how_to_restore_it(old_store, tmp_path):
    """A real loss: a trigger in the old store deletes a metric each time Alembic records a
    migration step, so MLflow's own upgrade loses rows and only the counts can tell."""
    db, _ = old_store
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER lose_a_metric AFTER UPDATE ON alembic_version BEGIN "
            "DELETE FROM metrics WHERE rowid = (SELECT min(rowid) FROM metrics); END"
        )
    metrics = rows(db, "metrics")

    done = mlcycle(tmp_path, f"sqlite:///{db}", "db", "upgrade")
    assert done.returncode == 2, done.stdout + done.stderr
    [backup] = (tmp_path / "backups").iterdir()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert f"(metrics {metrics} -> {rows(db, 'metrics')}" in errors[0]
    assert f"the backup taken before is {backup}: with nothing using the store, cp {backup} {db}" in errors[0]
    assert "metrics" in done.stdout and "!=" in done.stdout and "counts equal" not in done.stdout
    assert rows(backup, "metrics") == metrics  # the backup holds what the migration lost


def test_a_store_newer_than_this_mlflow_is_refused_and_not_touched(template_store, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copy(template_store, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    before, uri = digest(db), f"sqlite:///{db}"

    for args in (["train", *TINY], ["db", "upgrade"], ["db", "check"]):
        done = mlcycle(tmp_path, uri, *args)
        assert done.returncode == 4, done.stderr
        assert f"has schema ffffffffffff, which MLflow {MLFLOW_VERSION} does not know" in only_error_line(done)
    assert digest(db) == before and not (tmp_path / "backups").exists()


def test_a_store_that_does_not_exist_yet_is_not_created_by_the_check(tmp_path):
    db = tmp_path / "new" / "mlflow.db"
    check = mlcycle(tmp_path, f"sqlite:///{db}", "db", "check")
    assert check.returncode == 0, check.stderr
    assert "MLflow creates it on first use" in check.stdout
    assert not db.exists() and not db.parent.exists()
