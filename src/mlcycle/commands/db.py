"""``mlcycle db check | upgrade``: the tracking database's schema against this MLflow's.

MLflow migrates an older store silently the moment it opens it, and the older MLflow can
no longer read it; every mlcycle command refuses such a store instead, naming this command.

  check     exit 0 when the schema is this MLflow's (or there is none yet), 4 when it is older
            or unknown (one line saying which); nothing is written
  upgrade   back up (sqlite: a copy; PostgreSQL: pg_dump) into backups/, migrate with MLflow's
            own `mlflow db upgrade`, then count the rows of every table before and after:
            equal, or an error naming the backup and how to restore it. Stop the tracking
            server and pipelines first (a PostgreSQL database in use is refused).

The store is --tracking-uri, else MLFLOW_TRACKING_URI, else the configured one (overrides
such as mlflow.tracking_uri=... are accepted, as for mlcycle train). A tracking server's
database is upgraded on its machine: scripts/server.sh upgrade (it runs this command).
"""

from __future__ import annotations

from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common

DEFAULT_TIMEOUT = 5.0


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("db", __doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="is the schema this MLflow's? (exit 0 yes, 4 no)")
    upgrade = sub.add_parser("upgrade", help="back up, migrate, compare row counts")
    for each in (check, upgrade):
        each.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else the project's store")
        each.add_argument("overrides", nargs="*", help="config overrides, e.g. mlflow.tracking_uri=sqlite:///other.db")
    check.add_argument(
        "--upgrade-command", default=None, metavar="CMD",
        help="the command an out-of-date schema's message names (default: mlcycle db upgrade)",
    )
    upgrade.add_argument(
        "--backup-dir", type=Path, default=None, help="where the backup goes (default: backups/ at the project root)"
    )
    args = parser.parse_args(argv)
    uri, timeout = _store(args)
    from mlcycle.core.masking import mask_uri
    from mlcycle.errors import MlcycleError
    from mlcycle.tracking.remote import check_reachable
    from mlcycle.tracking.store_schema import is_database

    if not is_database(uri):
        raise MlcycleError(
            f"{mask_uri(uri)} is not a tracking database: mlcycle db works on the database itself "
            "(sqlite, PostgreSQL); a tracking server's database is checked by scripts/server.sh "
            "start and upgraded on its machine with scripts/server.sh upgrade"
        )
    check_reachable(uri, timeout)
    if args.action == "check":
        return _check(uri, timeout, args.upgrade_command)
    return _upgrade(uri, timeout, args.backup_dir)


def _store(args) -> tuple[str, float]:
    if args.tracking_uri:  # no composition needed (scripts/server.sh start calls this)
        return args.tracking_uri, DEFAULT_TIMEOUT
    from mlcycle.config.load import compose

    cfg = compose(args.overrides)
    return _common.store_uri(cfg), cfg.mlflow.connect_timeout


def _check(uri: str, timeout: float, upgrade_command: str | None) -> int:
    from mlcycle.tracking import store_schema

    schema = store_schema.refuse_mismatch(uri, timeout, upgrade_command or store_schema.UPGRADE_COMMAND)
    if schema is None:
        print(f"no tracking store at {store_schema.sqlite_path(uri)} yet; MLflow creates it on first use")
    else:
        print(schema.describe())
    return 0


def _upgrade(uri: str, timeout: float, backup_dir: Path | None) -> int:
    from mlcycle.config.load import project_root
    from mlcycle.tracking.store_upgrade import upgrade

    done = upgrade(uri, backup_dir or project_root() / "backups", timeout, say=print)
    if done is None:
        return 0
    print(f"migrated in {done.seconds:.1f} s to schema {done.revision}; rows per table, before and after:")
    shown = {t: rows for t, rows in done.before.items() if rows or done.after[t]}
    width = max(map(len, shown), default=0)
    for table, rows in shown.items():
        after = done.after[table]
        print(f"  {table:<{width}}  {rows:>9} {'=' if after == rows else '!='} {after}")
    if empty := [t for t in done.before if t not in shown]:
        print(f"  empty before and after: {', '.join(empty)}")
    if not done.differences():
        print(f"counts equal ({len(done.before)} tables, {sum(done.before.values())} rows); backup kept at {done.backup}")
    done.check()  # raises, naming the backup, unless the counts and the revision are right
    return 0
