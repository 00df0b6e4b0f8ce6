"""What the commands share: options plus config overrides, and the tracking store."""

from __future__ import annotations

import argparse


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
