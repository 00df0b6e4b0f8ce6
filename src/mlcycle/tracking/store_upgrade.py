"""Upgrade a tracking database to this MLflow's schema without risking its history.

``upgrade`` (``mlcycle db upgrade``, ``make db-upgrade``, ``scripts/server.sh upgrade``):

1. the schema is read without migrating (``store_schema``): current or fresh -> nothing to
   do, no backup; unknown (a newer MLflow wrote it) -> refused;
2. a PostgreSQL database other sessions are using (the server, a pipeline) is refused;
3. backup into a folder, mode 600, named ``<db>-<stamp>-schema-<old>-to-mlflow-<version>``:
   sqlite -> a copy through sqlite's backup API (consistent even if the file is open);
   PostgreSQL -> ``pg_dump -Fc``, the password only in the child's environment;
4. the rows of every table counted, MLflow's own ``mlflow db upgrade`` run (in this process,
   so a password in the URI never reaches a command line), the rows counted again;
5. ``Upgrade.check``: the same counts, or an error naming the backup and how to restore it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlcycle.core.masking import mask_text, mask_uri
from mlcycle.errors import MlcycleError, first_line
from mlcycle.tracking.store_schema import (
    CURRENT,
    FRESH,
    OUTDATED,
    Schema,
    mlflow_version,
    open_engine,
    read_schema,
    refuse_mismatch,
    sqlite_path,
)

# Shown first, in this order; every other table that existed before is counted too.
HEADLINE_TABLES = (
    "experiments",
    "runs",
    "metrics",
    "latest_metrics",
    "params",
    "tags",
    "registered_models",
    "model_versions",
    "registered_model_aliases",
)


@dataclass(frozen=True)
class Upgrade:
    """One migration: the schema before, the revision after, the backup, the row counts."""

    schema: Schema
    revision: str | None
    backup: Path
    before: dict[str, int]
    after: dict[str, int]
    seconds: float

    def differences(self) -> list[str]:
        return differences(self.before, self.after)

    def check(self) -> None:
        """Raise (one line naming the backup and how to restore it) unless every table kept
        its rows and the schema is now this MLflow's."""
        if self.revision != self.schema.head:
            raise MlcycleError(
                f"after the migration {mask_uri(self.schema.uri)} has schema {self.revision}, not "
                f"{self.schema.head}; the backup taken before is {self.backup}: {restore_hint(self.schema.uri, self.backup)}"
            )
        if diff := self.differences():
            raise MlcycleError(
                f"row counts changed in the migration ({', '.join(diff)}); the backup taken before "
                f"is {self.backup}: {restore_hint(self.schema.uri, self.backup)}"
            )


def upgrade(uri: str, folder: Path, timeout: float = 5.0, say: Callable[[str], None] = print) -> Upgrade | None:
    """Back up, migrate and count (the module docstring); None when there was nothing to do
    (``say`` tells why). ``check()`` the result."""
    schema = read_schema(uri, timeout)
    if schema is None:
        raise MlcycleError(f"no tracking store at {sqlite_path(uri) or mask_uri(uri)}")
    if schema.status in (FRESH, CURRENT):
        say(f"{schema.describe()}: nothing to upgrade, no backup taken")
        return None
    if schema.status != OUTDATED:
        refuse_mismatch(uri, timeout)  # raises: a revision this MLflow does not know
    kind = _kind(uri)
    if kind == "postgresql" and (others := other_sessions(uri, timeout)):
        raise MlcycleError(
            f"{others} other session(s) are connected to {mask_uri(uri)} (the mlflow server, a "
            "pipeline?): stop them first (make server-stop), then run the upgrade again"
        )
    say(schema.describe())
    saved = backup(schema, folder)
    say(f"backup: {saved}")
    before = count_rows(uri, timeout)
    say(f"migrating to schema {schema.head} (mlflow db upgrade) ...")
    started = time.monotonic()
    try:
        _migrate(uri)
    except Exception as exc:  # MLflow's, Alembic's, the driver's: the database may be half-done
        raise MlcycleError(
            f"the migration of {mask_uri(uri)} failed ({mask_text(first_line(exc))[:300]}); the backup "
            f"taken before is {saved}: {restore_hint(uri, saved)}"
        ) from None
    seconds = time.monotonic() - started
    after_schema = read_schema(uri, timeout)
    after = count_rows(uri, timeout)
    revision = after_schema.revision if after_schema else None
    return Upgrade(schema, revision, saved, before, {t: after.get(t, -1) for t in before}, seconds)


def count_rows(uri: str, timeout: float = 5.0) -> dict[str, int]:
    """Rows per table (Alembic's bookkeeping left out), headline tables first."""
    from sqlalchemy import func, inspect, select, table

    engine = open_engine(uri, timeout)
    try:
        with engine.connect() as conn:
            names = [t for t in inspect(conn).get_table_names() if not t.startswith("alembic_")]
            order = [t for t in HEADLINE_TABLES if t in names] + sorted(set(names) - set(HEADLINE_TABLES))
            return {t: conn.execute(select(func.count()).select_from(table(t))).scalar_one() for t in order}
    finally:
        engine.dispose()


def differences(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """``"metrics 36 -> 35"`` for each table whose count changed or that is gone (-1 or absent)."""
    out = []
    for name, rows in before.items():
        now = after.get(name, -1)
        if now != rows:
            out.append(f"{name} {rows} -> {'gone' if now < 0 else now}")
    return out


def other_sessions(uri: str, timeout: float = 5.0) -> int:
    """Client sessions on this PostgreSQL database besides our own."""
    from sqlalchemy import text

    engine = open_engine(uri, timeout)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            ).scalar_one()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- backups
def backup(schema: Schema, folder: Path) -> Path:
    """A consistent copy of the database in ``folder`` (mode 600), named after the date, the
    schema it has and the MLflow it is about to be migrated for."""
    kind = _kind(schema.uri)
    stem = sqlite_path(schema.uri).stem if kind == "sqlite" else _url(schema.uri).database
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{stamp}-schema-{schema.revision}-to-mlflow-{mlflow_version()}"
    target = folder / f"{name}{'.db' if kind == 'sqlite' else '.dump'}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{name}-{n}{target.suffix}"
    try:
        if kind == "sqlite":
            _sqlite_backup(sqlite_path(schema.uri), target)
        else:
            _pg_dump(schema.uri, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def restore_hint(uri: str, saved: Path) -> str:
    """How to put the backup back (one clause)."""
    if _kind(uri) == "sqlite":
        return f"with nothing using the store, cp {saved} {sqlite_path(uri)}"
    url = _url(uri)
    where = " ".join(
        f"{flag} {value}" for flag, value in (("-h", url.host), ("-p", url.port), ("-U", url.username)) if value
    )
    return (
        f"createdb {where} {url.database}_restored && pg_restore {where} --no-owner -d "
        f"{url.database}_restored {saved}, then point the store at {url.database}_restored (docs/operations.md)"
    )


def _sqlite_backup(path: Path, target: Path) -> None:
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _pg_dump(uri: str, target: Path) -> None:
    url = _url(uri)
    args = [pg_dump_path(), "--format=custom", "--no-password", f"--file={target}"]
    host = url.host or url.query.get("host")
    for flag, value in (("--host", host), ("--port", url.port), ("--username", url.username)):
        if value:
            args += [flag, str(value)]
    args += ["--dbname", url.database]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password  # the child's environment, never its command line
    if sslmode := url.query.get("sslmode"):
        env["PGSSLMODE"] = str(sslmode)
    done = subprocess.run(args, env=env, capture_output=True, text=True, umask=0o077)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise MlcycleError(f"pg_dump of {mask_uri(uri)} failed ({mask_text(reason)[:300]}); nothing was migrated")


def pg_dump_path() -> str:
    """``MLCYCLE_PG_DUMP``, else the newest /usr/lib/postgresql/*/bin/pg_dump (Debian), else
    ``pg_dump`` on PATH."""
    if configured := os.environ.get("MLCYCLE_PG_DUMP"):
        return configured
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if installed:
        return str(installed[-1])
    if found := shutil.which("pg_dump"):
        return found
    raise MlcycleError(
        "pg_dump not found (it backs up the database before the migration): install PostgreSQL's "
        "client programs (apt-get install postgresql-client) or set MLCYCLE_PG_DUMP"
    )


def _migrate(uri: str) -> None:
    """MLflow's own ``mlflow db upgrade URI``, run in this process."""
    from mlflow.db import upgrade as mlflow_db_upgrade

    mlflow_db_upgrade.callback(uri)


def _kind(uri: str) -> str:
    base = uri.split("://", 1)[0].lower().split("+", 1)[0]
    if base == "sqlite":
        return "sqlite"
    if base in ("postgresql", "postgres"):
        return "postgresql"
    raise MlcycleError(
        f"mlcycle db upgrade backs up sqlite and PostgreSQL stores only: back up {mask_uri(uri)} "
        "yourself, then run mlflow db upgrade on it"
    )


def _url(uri: str):
    from sqlalchemy.engine import make_url

    return make_url(uri)
