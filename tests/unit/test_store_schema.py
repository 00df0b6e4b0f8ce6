"""The schema check's reading of MLflow's migrations agrees with Alembic's own, and its URI
helpers name the right file (tracking/store_schema.py)."""

from __future__ import annotations

from pathlib import Path

from mlcycle.tracking import store_schema


def test_revisions_read_from_the_scripts_are_alembics():
    import mlflow.store
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(mlflow.store.__file__).parent / "db_migrations"))
    def downs(d):
        return tuple(d) if isinstance(d, tuple | list) else ((d,) if d else ())

    alembic = {r.revision: downs(r.down_revision) for r in script.walk_revisions()}
    assert store_schema.migrations() == alembic
    assert [store_schema.head_revision()] == list(script.get_heads())


def test_only_database_uris_are_checked_and_sqlite_paths_are_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_schema.is_database("sqlite:///mlflow.db")
    assert store_schema.is_database("postgresql+psycopg2://u:p@h/db")
    assert store_schema.is_database("mysql+pymysql://u@h/db")
    assert not store_schema.is_database("http://127.0.0.1:5000")
    assert not store_schema.is_database("file:///tmp/mlruns")
    assert store_schema.sqlite_path("sqlite:///mlflow.db") == tmp_path / "mlflow.db"
    assert store_schema.sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert store_schema.sqlite_path("sqlite://") is None
    assert store_schema.read_schema("sqlite:///absent.db") is None
    assert not (tmp_path / "absent.db").exists()
