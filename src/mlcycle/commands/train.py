"""``mlcycle train [overrides...]``: the Hydra application that runs the pipeline.

Hydra composes the config, once (``hydra.main``: multirun sweeps, ``--cfg``, ``--help``
and its run directories come with it); ``Precheck`` checks it before anything is written,
and ``job`` is a thin wrapper over ``pipeline.run``. Hydra's errors and the job's are raised
to the CLI's one handler, not printed by Hydra.
"""

from __future__ import annotations

import copy
import os
import sys
import time

from hydra.experimental.callback import Callback

from mlcycle.cli import command
from mlcycle.errors import JobFailed


@command
def main(args: list[str]) -> int:
    import hydra

    from mlcycle.commands._common import RESULT_OPTION, pop_result_file
    from mlcycle.config.load import config_dir, config_errors, register_configs
    from mlcycle.errors import ConfigError

    result_file, args = pop_result_file(args)
    if result_file and {"-m", "--multirun"} & set(args):
        raise ConfigError(f"{RESULT_OPTION} describes one run; it cannot be used with a multirun (-m)")

    def task(cfg) -> None:
        job(cfg, result_file)

    register_configs()
    app = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task)
    saved = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["mlcycle train", *args]  # hydra.main reads its overrides from sys.argv
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise a bad override instead of printing it
    try:
        with config_errors():
            app()
    finally:
        sys.argv = saved[0]
        if saved[1] is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def job(cfg, result_file: str | None = None) -> None:
    """One Hydra job: the typed config, the pipeline, a summary (and the result file)."""
    started = time.perf_counter()
    try:
        from mlcycle import pipeline
        from mlcycle.config.load import typed

        result = pipeline.run(typed(cfg))
    except BaseException as exc:
        raise JobFailed(exc) from exc  # past Hydra's own handling, to cli.handle
    print(summary(result, time.perf_counter() - started))
    if result_file:
        from mlcycle.commands._common import write_result

        write_result(outcome(result), result_file)


def outcome(result) -> dict:
    """What an orchestrator reads back: the root run and what it registered."""
    state = result.state
    return {
        "run_id": result.run_id,
        "experiment_id": result.experiment_id,
        "registered_model": state.registered_name,
        "registered_version": state.registered_version,
        "aliases": list(state.aliases),
        "promoted": state.promoted,
        "test_metrics": state.test_metrics,
    }


class Precheck(Callback):
    """Hydra calls it once the config is composed and before it creates the run directory
    (conf/hydra/default.yaml registers it): a bad value, a missing data file or an
    unreachable store fail here in seconds, before MLflow is imported, leaving nothing on
    disk. (Each job of a multirun sweep is checked by the pipeline instead.)"""

    def on_run_start(self, config, **kwargs) -> None:
        try:
            self.check(config)
        except BaseException as exc:
            raise JobFailed(exc) from exc  # Hydra turns a callback's Exception into a warning

    @staticmethod
    def check(config) -> None:
        from omegaconf import open_dict, read_write

        from mlcycle.config.load import typed
        from mlcycle.config.schema import Source
        from mlcycle.core.data import resolve_path
        from mlcycle.errors import DataError
        from mlcycle.tracking.remote import check_tracking_store, resolve_tracking_uri

        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        cfg = typed(task)
        if cfg.data.source is Source.file and not (path := resolve_path(cfg.data.path or "")).is_file():
            raise DataError(f"data file not found: {path}")
        check_tracking_store(resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.mlflow.connect_timeout)


def summary(result, seconds: float) -> str:
    from mlcycle.core.masking import mask_text

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
    return "\n".join(lines)
