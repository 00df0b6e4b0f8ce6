"""Which MLflow schema a tracking database has, read WITHOUT migrating it.

MLflow's own store migrates silently: opening a store whose tables are not all there (any
store an older MLflow wrote) runs every migration, with no backup, and the older MLflow can
no longer open it ("Can't locate revision ..."). MLflow's own refusal ("Detected out-of-date
database schema") only fires when all tables already exist. So mlcycle reads the Alembic
revision itself, with a plain SQLAlchemy connection (sqlite opened read-only), before any
MLflow store or client exists for the URI, and refuses a schema that is not this MLflow's:

* no ``alembic_version`` (a new or empty database): fresh, MLflow creates the schema;
* this MLflow's head revision: current;
* a revision this MLflow's migrations know, but not the head: outdated ->
  ``mlcycle db upgrade`` (tracking/store_upgrade.py: backup, migrate, count);
* a revision it does not know: written by a newer MLflow (or not an MLflow store).

MLflow's revisions are read from its migration scripts' text, so the check imports neither
MLflow nor Alembic. HTTP stores are not databases: the server owns its database
(scripts/server.sh checks it before starting the server).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from mlcycle.core.masking import mask_uri
from mlcycle.errors import StoreSchemaError, TrackingUnreachable, first_line

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
UPGRADE_COMMAND = "mlcycle db upgrade"

FRESH, CURRENT, OUTDATED, UNKNOWN = "fresh", "current", "outdated", "unknown"


def is_database(uri: str) -> bool:
    """A SQLAlchemy URL of a database MLflow can use as a tracking store."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme.split("+", 1)[0] in DATABASE_SCHEMES


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (relative paths: to the working directory);
    None for other URIs and in-memory databases."""
    if not uri.lower().startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return None if not database or database == ":memory:" else Path(database).expanduser().absolute()


@dataclass(frozen=True)
class Schema:
    """A tracking database's revision next to the one this MLflow needs."""

    uri: str
    revision: str | None  # None: no MLflow schema yet
    head: str
    known: bool  # the revision is one of this MLflow's migrations

    @property
    def status(self) -> str:
        if self.revision is None:
            return FRESH
        if self.revision == self.head:
            return CURRENT
        return OUTDATED if self.known else UNKNOWN

    def describe(self) -> str:
        """One line: the store (masked), its schema, what this MLflow needs."""
        store = f"tracking store {mask_uri(self.uri)}"
        version = mlflow_version()
        if self.status == FRESH:
            return f"{store} has no MLflow schema yet; MLflow {version} creates it (schema {self.head}) on first use"
        if self.status == CURRENT:
            return f"{store} has schema {self.revision}, the one MLflow {version} needs"
        if self.status == OUTDATED:
            return (
                f"{store} was written by an older MLflow (schema {self.revision}, "
                f"this MLflow {version} needs {self.head})"
            )
        return (
            f"{store} has schema {self.revision}, which MLflow {version} does not know "
            f"(it needs {self.head}): it was written by a newer MLflow, or is not an MLflow store"
        )


def mlflow_version() -> str:
    return importlib.metadata.version("mlflow")


def read_schema(uri: str, timeout: float = 5.0) -> Schema | None:
    """The database's schema, read without migrating; None when ``uri`` is not a database
    or names a sqlite file that does not exist (nothing is created)."""
    if not is_database(uri):
        return None
    path = sqlite_path(uri)
    if uri.lower().startswith("sqlite") and (path is None or not path.exists()):
        return None
    from sqlalchemy import inspect, text

    engine = open_engine(uri, timeout)
    try:
        with engine.connect() as conn:
            revision = None
            if inspect(conn).has_table("alembic_version"):
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # sqlalchemy's errors, the driver's, a missing driver
        raise TrackingUnreachable(
            f"tracking store {mask_uri(uri)} cannot be read ({first_line(exc)[:300]})"
        ) from None
    finally:
        engine.dispose()
    return Schema(uri, revision, head_revision(), revision is not None and _known(revision))


def refuse_mismatch(uri: str, timeout: float = 5.0, upgrade_command: str = UPGRADE_COMMAND) -> Schema | None:
    """Raise ``StoreSchemaError`` (one line naming the store and the command that upgrades)
    unless the database's schema is this MLflow's or it has none yet."""
    schema = read_schema(uri, timeout)
    if schema is None or schema.status in (FRESH, CURRENT):
        return schema
    if schema.status == OUTDATED:
        raise StoreSchemaError(f"{schema.describe()}: run '{upgrade_command}' on it (it backs up first)")
    raise StoreSchemaError(
        f"{schema.describe()}; use the MLflow version that wrote it (every machine logging to "
        "one store must run the same one)"
    )


def open_engine(uri: str, timeout: float = 5.0):
    """A SQLAlchemy engine without a pool; a sqlite file is opened read-only."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    path = sqlite_path(uri)
    if path is not None:
        import sqlite3

        read_only = f"{path.as_uri()}?mode=ro"
        return sqlalchemy.create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(read_only, uri=True), poolclass=NullPool
        )
    base = uri.split("://", 1)[0].lower().split("+", 1)[0]
    connect_args = {"connect_timeout": max(1, int(timeout))} if base in ("postgresql", "postgres", "mysql") else {}
    return sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)


@functools.cache
def migrations() -> dict[str, tuple[str, ...]]:
    """MLflow's schema revisions (the Alembic scripts its ``mlflow db upgrade`` runs), each
    with the revisions it follows. Read from the files, not imported: importing them loads
    MLflow and costs seconds; tests/unit/test_store_schema.py checks this agrees with Alembic."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mlflow is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "store" / "db_migrations" / "versions"
    found: dict[str, tuple[str, ...]] = {}
    for script in folder.glob("*.py"):
        values = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                        values[target.id] = ast.literal_eval(node.value)
        if isinstance(values.get("revision"), str):
            down = values.get("down_revision")
            found[values["revision"]] = tuple(down) if isinstance(down, list | tuple) else ((down,) if down else ())
    return found


def head_revision() -> str:
    """The schema this MLflow needs: the revision no other one follows."""
    graph = migrations()
    heads = sorted(set(graph) - {d for downs in graph.values() for d in downs})
    if len(heads) != 1:
        raise RuntimeError(f"MLflow {mlflow_version()} ships {len(heads)} schema heads: {heads}")
    return heads[0]


def _known(revision: str) -> bool:
    return revision in migrations()
