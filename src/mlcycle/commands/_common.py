"""What the registry commands share: composing the config, reaching the store, reporting errors."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from mlcycle.cli import expand_overrides
from mlcycle.errors import ConfigError, MlcycleError


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Options plus trailing Hydra overrides (``key=value``; ``--overrides "a=1 b=2"`` too)."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=wine registry.gate.min_absolute_change=0.01")
    return parser.parse_intermixed_args(expand_overrides(argv))


def compose(overrides: list[str], config_name: str = "config", job_name: str = "mlcycle"):
    """The project's typed config (``config``, or ``monitor``) with these overrides; a bad
    override is one ConfigError line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mlcycle.commands.train import _one_line
    from mlcycle.config import config_dir, register_configs, to_typed, to_typed_monitor

    typed = {"config": to_typed, "monitor": to_typed_monitor}[config_name]
    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=job_name):
        try:
            cfg = hydra_compose(config_name, overrides=list(overrides))
        except Exception as exc:
            raise ConfigError(_one_line(exc)) from None
    try:
        return typed(cfg)
    except MlcycleError:
        raise
    except Exception as exc:
        raise ConfigError(_one_line(exc)) from None


def connect(cfg):
    """Point MLflow at the configured store (MLFLOW_TRACKING_URI wins) and return a client."""
    import mlflow
    from mlflow import MlflowClient

    from mlcycle.tracking import resolve_tracking_uri

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def run(body: Callable[[], int]) -> int:
    """Run a command body: user errors are one line and exit 2, others exit 1."""
    try:
        return body()
    except MlcycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if os.environ.get("MLCYCLE_DEBUG"):
            traceback.print_exc()
        text = exc.message if isinstance(exc, MlflowException) else str(exc)
        first = text.strip().splitlines()[0] if text.strip() else ""
        hint = "" if os.environ.get("MLCYCLE_DEBUG") else " (MLCYCLE_DEBUG=1 shows the traceback)"
        print(f"error: {type(exc).__name__}: {first}{hint}", file=sys.stderr)
        return 1
