"""``mlcycle train [overrides...]``: the Hydra application that runs the pipeline."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback

from mlcycle.cli import expand_overrides
from mlcycle.errors import MlcycleError, PipelineTerminated
from mlcycle.masking import mask_text

log = logging.getLogger("mlcycle")


def main(argv: list[str]) -> int:
    args = shorthands(expand_overrides(argv))
    from mlcycle.config import config_dir, register_configs

    try:
        register_configs()
        conf = config_dir()
        cfg = precheck(args)
        if cfg is not None:  # an unreachable tracking store fails here, before MLflow is imported
            from mlcycle.remote import check_tracking_store, resolve_tracking_uri

            check_tracking_store(resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.mlflow.connect_timeout)
    except MlcycleError as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        return exc.exit_code

    import hydra

    sys.argv = ["mlcycle train", *args]
    app = hydra.main(config_path=str(conf), config_name="config", version_base="1.3")(_task)
    app()
    return 0


# `cache` is a config group, and Hydra rejects a boolean as a group choice.
SHORTHANDS = {"cache=false": "cache.enabled=false", "cache=true": "cache.enabled=true"}


def shorthands(args: list[str]) -> list[str]:
    """Expand ``cache=false`` / ``cache=true`` into the override Hydra accepts."""
    return [SHORTHANDS.get(a.lower(), a) for a in args]


def precheck(args: list[str]):
    """Compose and validate the config of a single run, so a bad override or value is one
    clear line and no run is created; return it (None for sweeps: Hydra checks each job)."""
    if any(a.startswith("-") for a in args):
        return None  # -m, --cfg, --help, ...: Hydra's own handling
    from hydra import compose, initialize_config_dir

    from mlcycle.config import ConfigError, Source, config_dir, to_typed
    from mlcycle.data import resolve_path
    from mlcycle.errors import DataError

    overrides = [a for a in args if not a.startswith(("hydra.", "hydra/", "+hydra", "++hydra"))]
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="mlcycle"):
        try:
            cfg = compose("config", overrides=overrides)
        except Exception as exc:
            raise ConfigError(_one_line(exc)) from None
    try:
        typed = to_typed(cfg)
    except MlcycleError:
        raise
    except Exception as exc:  # omegaconf validation/interpolation errors
        raise ConfigError(_one_line(exc)) from None
    if typed.data.source is Source.file:
        path = resolve_path(typed.data.path or "")
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
    return typed


def _one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, condensed to one line."""
    text = str(exc)
    if "Available options in" in text:  # an unknown group option: list the valid ones
        head, _, tail = text.partition("Available options in")
        options = []
        for line in tail.splitlines()[1:]:
            if not line.startswith("\t"):
                break  # the indented option list has ended
            if not line.strip().startswith("base_"):  # schemas, not user options
                options.append(line.strip())
        return f"{head.strip().splitlines()[0]}; available: {', '.join(options)}"
    parts = []
    while exc is not None and len(parts) < 3:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first not in parts:
            parts.append(first)
        exc = exc.__cause__
    return ": ".join(parts)


def _task(cfg) -> None:
    from mlcycle import pipeline
    from mlcycle.config import to_typed

    started = time.perf_counter()
    try:
        typed = to_typed(cfg)
        result = pipeline.run(typed)
    except MlcycleError as exc:
        print(f"error: {_where(exc)}{mask_text(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except PipelineTerminated as exc:
        print(f"error: {_where(exc)}{exc}; the open runs were ended KILLED", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as exc:
        if os.environ.get("MLCYCLE_DEBUG"):
            traceback.print_exc()
        hint = "" if os.environ.get("MLCYCLE_DEBUG") else " (MLCYCLE_DEBUG=1 shows the traceback)"
        print(f"error: {_where(exc)}{type(exc).__name__}: {mask_text(str(exc))}{hint}", file=sys.stderr)
        sys.exit(1)
    _summary(result, time.perf_counter() - started)


def _where(exc: BaseException) -> str:
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith("stage ")]
    return f"[{notes[0]}] " if notes else ""


def _summary(result, seconds: float) -> None:
    state = result.state
    metrics = {f"cv_{state.metric}": state.cv_score} if state.cv_score is not None else {}
    metrics |= {f"test_{k}": v for k, v in state.test_metrics.items()}
    lines = [f"mlcycle: run {result.run_id} finished in {seconds:.1f} s ({mask_text(result.tracking_uri)})"]
    if metrics:
        lines.append("  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if state.registered_version:
        lines.append(f"  registered {state.registered_name} version {state.registered_version} ({', '.join(state.aliases)})")
        if state.gate_summary:
            lines.append(f"  {'promoted' if state.promoted else 'NOT promoted'}: {state.gate_summary}")
    if result.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}")
    print("\n".join(lines))
