"""``mlcycle reproduce <models:/name/version | models:/name@alias | run id>``: rerun a pipeline
from its lineage (same resolved config, data source and seed) into a new root run, then report
metric by metric whether the test metrics match exactly, and what differs when they do not.

Exit code: 0 when every test metric matches exactly, 1 when any differs, 2 on bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mlcycle.cli import command
from mlcycle.commands import _common

OUTCOME_TAG = "mlcycle.reproduction"  # on the new root run: match | differs


@command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlcycle reproduce",
        description="Rerun a registered version's (or a run's) pipeline from its lineage (same config, data "
        "source and seed) into a new root run, and report metric by metric whether the test metrics match "
        "exactly. Exit code 0: all match; 1: some differ; 2: bad input.",
    )
    parser.add_argument("target", help="models:/<name>/<version>, models:/<name>@<alias>, or a (root or stage) run id")
    parser.add_argument("--show", action="store_true", help="print the lineage only; run nothing")
    parser.add_argument(
        "--register", action="store_true", help="register the reproduced model as a new version (default: log it only)"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="tracking store (default: MLFLOW_TRACKING_URI, else the project's store)"
    )
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    from mlcycle import pipeline
    from mlcycle.config.load import compose
    from mlcycle.tracking import lineage

    current = compose()  # today's store, paths and artifact location
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri  # the pipeline reads it too
    client, _ = _common.connect(current)
    original = lineage.trace(client, args.target)
    print(f"{args.target} comes from:")
    print("\n".join(lineage.describe(original)))
    if args.show:
        return 0
    if not original.test_metrics:
        print(f"warning: root run {original.root_run_id} has no test metrics to compare (did it reach evaluate?)")

    experiment = lineage.experiment_name(client, original.experiment_id)
    cfg = lineage.reproduction_config(original, current, experiment, register=args.register)
    print("running it again: same config, data source and seed; step cache off" + ("" if args.register else "; not registered"))
    sys.stdout.flush()
    result = pipeline.run(cfg)
    new = lineage.trace(client, result.run_id)
    comparison = lineage.compare(original, new)
    client.set_tag(result.run_id, OUTCOME_TAG, "match" if comparison.reproduced else "differs")
    print(report(comparison, result.run_id))
    return 0 if comparison.reproduced else 1


def report(comparison, new_run_id: str) -> str:
    rows = [("metric", "original", "reproduced", "match")]
    for m in comparison.metrics:
        rows.append((m.name, _num(m.original), _num(m.reproduced), "yes" if m.match else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    n, differing = len(comparison.metrics), sum(not m.match for m in comparison.metrics)
    if comparison.reproduced:
        lines.append(f"reproduced: all {n} test metrics match exactly (new root run {new_run_id})")
        lines += [f"  note: {d}" for d in comparison.differences]
    else:
        lines.append(f"NOT reproduced: {differing} of {n} test metrics differ (new root run {new_run_id})")
        reasons = comparison.differences or [
            "unknown: same data digest, code version and environment; a source of randomness is not seeded"
        ]
        lines += [f"  reason: {d}" for d in reasons]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else repr(value)
