"""``mlcycle runs close-stale``: end runs left RUNNING by a process that no longer exists.

Runs whose owner process is gone end FAILED with ``mlcycle.error`` saying why; duplicates
left by a retried ``runs/create`` are deleted. Runs owned by a live process are never touched;
runs from another host (or made outside mlcycle) only with ``--older-than``.
The tracking store is ``MLFLOW_TRACKING_URI`` or the configured one (overrides such as
``mlflow=server`` are accepted, as for ``mlcycle train``).
"""

from __future__ import annotations

import argparse
import sys

from mlcycle.errors import MlcycleError
from mlcycle.masking import mask_text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlcycle runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    close = sub.add_parser(
        "close-stale",
        help="end RUNNING runs whose process is gone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    close.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="only this experiment (repeatable); default: every active experiment",
    )
    close.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="HOURS",
        help="also close runs whose liveness cannot be checked (another host, no owner "
        "tags) when they started more than HOURS ago",
    )
    close.add_argument(
        "--dry-run", action="store_true", help="show what would be done, change nothing"
    )
    close.add_argument("overrides", nargs="*", help="config overrides, e.g. mlflow=server")
    args = parser.parse_args(argv)
    try:
        return close_stale(args)
    except MlcycleError as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        return exc.exit_code


def close_stale(args: argparse.Namespace) -> int:
    from mlcycle.remote import check_tracking_store

    uri, timeout = _tracking_store(args.overrides)
    check_tracking_store(uri, timeout)

    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from mlcycle import stale

    client = MlflowClient(uri)
    if args.experiment:
        ids = []
        for name in args.experiment:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise MlcycleError(f"experiment {name!r} not found in {uri}")
            ids.append(experiment.experiment_id)
    else:
        ids = [
            e.experiment_id
            for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50000)
        ]
    verdicts = stale.judge(
        client,
        stale.running_runs(client, ids),
        older_than_s=None if args.older_than is None else args.older_than * 3600,
    )
    failed = {} if args.dry_run else stale.apply(client, verdicts)
    done = {
        stale.CLOSE: "would close" if args.dry_run else "closed",
        stale.DELETE: "would delete" if args.dry_run else "deleted",
        stale.KEEP: "kept",
    }
    for v in verdicts:
        if v.run_id in failed:
            print(
                f"{'FAILED to ' + v.action:<12} {v.run_id}  {v.run_name or '-':<20} {failed[v.run_id]}"
            )
        else:
            print(f"{done[v.action]:<12} {v.run_id}  {v.run_name or '-':<20} {v.reason}")
    counts = {a: sum(v.action == a and v.run_id not in failed for v in verdicts) for a in done}
    print(
        f"{len(verdicts)} RUNNING run(s) in {len(ids)} experiment(s) of {mask_text(uri)}: "
        f"{counts[stale.CLOSE]} {done[stale.CLOSE]}, {counts[stale.DELETE]} {done[stale.DELETE]}, "
        f"{counts[stale.KEEP]} kept" + (f", {len(failed)} could not be changed" if failed else "")
    )
    return 1 if failed else 0


def _tracking_store(overrides: list[str]) -> tuple[str, float]:
    """MLFLOW_TRACKING_URI, else the composed config's mlflow.tracking_uri."""
    from hydra import compose, initialize_config_dir

    from mlcycle.config import config_dir, register_configs, to_typed
    from mlcycle.errors import ConfigError
    from mlcycle.remote import resolve_tracking_uri

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="mlcycle"):
        try:
            cfg = to_typed(compose("config", overrides=overrides))
        except MlcycleError:
            raise
        except Exception as exc:
            raise ConfigError(str(exc).strip().splitlines()[0]) from None
    return resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.mlflow.connect_timeout
