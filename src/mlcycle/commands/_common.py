"""What the commands share: options plus config overrides, the tracking store, and the
result file an orchestrator reads (train, retrain, monitor)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULT_OPTION = "--result-file"


def parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``mlcycle <command>``, its help text the module's docstring as written."""
    return argparse.ArgumentParser(prog=f"mlcycle {command}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Options plus trailing Hydra overrides (``key=value``)."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=wine registry.gate.min_absolute_change=0.01")
    return parser.parse_intermixed_args(argv)


def store_uri(cfg, tracking_uri: str | None = None) -> str:
    """The tracking store: ``tracking_uri`` (a --tracking-uri option), else
    MLFLOW_TRACKING_URI, else the config's."""
    from mlcycle.tracking.remote import resolve_tracking_uri

    return tracking_uri or resolve_tracking_uri(cfg.mlflow.tracking_uri)


def connect(cfg, tracking_uri: str | None = None):
    """The tracking store (``store_uri``), checked in seconds (reachable; a database's schema
    is this MLflow's; no MLflow import before), then MLflow is pointed at it.
    Returns (client, uri)."""
    from mlcycle.tracking.remote import check_tracking_store

    uri = store_uri(cfg, tracking_uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)
    from mlcycle.tracking.runs import connect as point_at

    return point_at(uri), uri


def pop_result_file(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--result-file PATH`` (or ``=PATH``) taken out of argv, for commands whose other
    arguments are Hydra overrides. Not a config value: it is not logged or reproduced."""
    rest, path = [], None
    items = iter(argv)
    for arg in items:
        if arg == RESULT_OPTION:
            path = next(items, None)
            if not path:
                from mlcycle.errors import ConfigError

                raise ConfigError(f"{RESULT_OPTION} needs a path")
        elif arg.startswith(RESULT_OPTION + "="):
            path = arg.split("=", 1)[1] or None
        else:
            rest.append(arg)
    return path, rest


def write_result(payload: dict[str, Any], path: str) -> None:
    """A command's outcome as one JSON object on one line, for an orchestrator to read
    (Airflow's XCom, a Kubeflow Pipelines component's outputs)."""
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload) + "\n")
