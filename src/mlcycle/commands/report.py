"""``mlcycle report <run id> [--out FILE]``: write a pipeline run's report card again."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common


@command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlcycle report",
        description="Rebuild the report card (report.html) of a pipeline run from the tracking store "
        "and log it on the run's root run; with --out, also write it to a local file.",
    )
    parser.add_argument("run_id", help="the pipeline's root run id (a stage or trial run id also works)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--no-log", action="store_true", help="do not log it on the run (needs --out)")
    parser.add_argument(
        "--tracking-uri", default=None,
        help="tracking store (default: MLFLOW_TRACKING_URI, else the project's sqlite store)",
    )
    args = parser.parse_args(argv)
    if args.no_log and args.out is None:
        parser.error("--no-log needs --out")
    from mlcycle.config.load import compose
    from mlcycle.errors import MlcycleError
    from mlcycle.tracking.remote import resolve_tracking_uri

    cfg = compose()
    uri = args.tracking_uri or resolve_tracking_uri(cfg.mlflow.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise MlcycleError(f"no tracking store at {uri.removeprefix('sqlite:///')}; set MLFLOW_TRACKING_URI or --tracking-uri")

    from mlcycle.report import REPORT_ARTIFACT, publish
    from mlcycle.report.tree import resolve_root

    client, _ = _common.connect(cfg, uri)
    root_id = resolve_root(client, args.run_id)
    publish(client, root_id, out=args.out, log_to_run=not args.no_log)
    done = [] if args.no_log else [f"logged {REPORT_ARTIFACT} on run {root_id}"]
    done += [f"wrote {args.out}"] if args.out else []
    print("mlcycle report: " + "; ".join(done))
    return 0
