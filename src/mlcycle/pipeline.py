"""The orchestrator: one ROOT run per invocation, one CHILD run per stage, in order.

``run(cfg)`` is a plain function over a typed Config; the CLI's Hydra entry point is a thin
wrapper around it and tests call it directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlcycle
from mlcycle import report, tracking
from mlcycle.caching import StageCache
from mlcycle.config import Config, ConfigError, as_dict, flatten
from mlcycle.errors import PipelineTerminated
from mlcycle.lineage import log_environment, source_digest
from mlcycle.masking import mask_text, mask_tree, mask_values
from mlcycle.remote import check_tracking_store
from mlcycle.state import State
from mlcycle.trial_runs import writer_kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    state: State


def run(cfg: Config) -> PipelineResult:
    """Run the configured stages under one root run and return the final state."""
    from mlcycle.stages import STAGE_FUNCTIONS

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    if "tune" in cfg.stages:
        try:
            writer_kind(cfg.tune.trial_writer.value, uri)  # a setting that cannot work: before any run
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    check_tracking_store(uri, cfg.mlflow.connect_timeout)  # fail in seconds, before any work
    experiment_id = tracking.prepare_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location)
    resolved = as_dict(cfg)
    lineage = {
        **tracking.git_state(Path(cfg.paths.root)),
        "mlcycle_version": mlcycle.__version__,
        "config_fingerprint": tracking.fingerprint(resolved),
        "source_digest": source_digest(),
    }
    run_name = cfg.mlflow.run_name or f"{cfg.data.name}-{cfg.model.name}"
    root_tags = {f"mlcycle.{k}": v for k, v in lineage.items()} | {"mlcycle.data_name": cfg.data.name} | mask_values(dict(cfg.mlflow.tags))

    # report.at_end comes first so it runs after the root run has ended (status, error tag)
    with report.at_end(cfg.report.enabled) as report_hook, _sigterm_raises(), \
            tracking.root_run(experiment_id, run_name, root_tags) as root:
        report_hook.root_run_id = root.run_id  # report.html is logged on it, also on failure
        log.info("root run %s in experiment %s (%s)", root.run_id, experiment_id, mask_text(uri))
        root.log.log_params(mask_values(flatten(cfg)))  # no password in a URI reaches the store
        tracking.log_artifact_dict(mask_tree(resolved), "config.yaml")
        log_environment(root.log.client, root.run_id)
        root.log.flush()  # the config is visible in the UI while the stages run
        state = State(lineage={**lineage, "root_run_id": root.run_id})
        cache = StageCache(cfg, root, lineage)
        for name in cfg.stages:
            started = time.perf_counter()
            log.info("stage %s ...", name)
            try:
                with tracking.stage_run(root, name) as stage:
                    state = cache.run(name, STAGE_FUNCTIONS[name], state, stage)
                    seconds = time.perf_counter() - started
                    stage.log.metric(duration_seconds=seconds)
            except BaseException as exc:  # PipelineTerminated too: the CLI names the stage
                exc.add_note(f"stage {name}")
                raise
            root.log.metric(**{f"duration_{name}_seconds": seconds})
            if name == "ingest":
                root.log.set_tags({"mlcycle.data_digest": state.data_digest, "mlcycle.data_source": state.data.source})
            log.info("stage %s done in %.1f s", name, seconds)
        root.log.log_metrics(headline_metrics(state))
        if state.registered_version:
            root.log.set_tags(
                {
                    "mlcycle.registered_model": state.registered_name,
                    "mlcycle.registered_version": state.registered_version,
                    "mlcycle.aliases": ",".join(state.aliases),
                    "mlcycle.promoted": str(state.promoted).lower(),
                }
            )
    return PipelineResult(root.run_id, experiment_id, uri, state)


def headline_metrics(state: State) -> dict[str, float]:
    """What the UI's run table compares: the chosen model's CV score and its test metrics."""
    out = {f"test_{k}": v for k, v in state.test_metrics.items()}
    if state.cv_score is not None and state.metric:
        out[f"cv_{state.metric}"] = state.cv_score
    return out


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into PipelineTerminated so open runs end KILLED, not RUNNING forever."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise PipelineTerminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

