"""``mlcycle runs close-stale``: end runs left RUNNING by a process that no longer exists.

Runs whose owner process is gone end FAILED with ``mlcycle.error`` saying why; duplicates
left by a retried ``runs/create`` are deleted. Runs that ``mlflow run`` created and never
started anything in (e.g. ``--backend kubernetes`` stopped before it pushed an image) are
closed 30 min after they started. Runs owned by a live process are never touched; runs
from another host (or made outside mlcycle) only with ``--older-than``.
The tracking store is ``MLFLOW_TRACKING_URI`` or the configured one (overrides such as
``mlflow=server`` are accepted, as for ``mlcycle train``).
"""

from __future__ import annotations

import argparse

from mlcycle.cli import command
from mlcycle.commands import _common
from mlcycle.core.masking import mask_text
from mlcycle.errors import MlcycleError


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("runs", __doc__)
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
    from mlcycle.config.load import compose
    from mlcycle.tracking import hygiene

    client, uri = _common.connect(compose(args.overrides))
    if args.experiment:
        ids = []
        for name in args.experiment:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise MlcycleError(f"experiment {name!r} not found in {uri}")
            ids.append(experiment.experiment_id)
    else:
        ids = [e.experiment_id for e in client.search_experiments(max_results=50000)]  # the active ones
    older_than_s = None if args.older_than is None else args.older_than * 3600
    verdicts = hygiene.with_trees(client, hygiene.judge(client, hygiene.running_runs(client, ids), older_than_s))
    failed = {} if args.dry_run else hygiene.apply(client, verdicts)
    done = {
        hygiene.CLOSE: "would close" if args.dry_run else "closed",
        hygiene.DELETE: "would delete" if args.dry_run else "deleted",
        hygiene.KEEP: "kept",
    }
    for v in verdicts:
        what = f"FAILED to {v.action}" if v.run_id in failed else done[v.action]
        print(f"{what:<12} {v.run_id}  {v.run_name or '-':<20} {failed.get(v.run_id, v.reason)}")
    counts = {a: sum(v.action == a and v.run_id not in failed for v in verdicts) for a in done}
    print(
        f"{len(verdicts)} RUNNING run(s) in {len(ids)} experiment(s) of {mask_text(uri)}: "
        f"{counts[hygiene.CLOSE]} {done[hygiene.CLOSE]}, {counts[hygiene.DELETE]} {done[hygiene.DELETE]}, "
        f"{counts[hygiene.KEEP]} kept" + (f", {len(failed)} could not be changed" if failed else "")
    )
    return 1 if failed else 0
