"""The orchestrator: one ROOT run per invocation, one CHILD run per stage, in order.

``run(cfg)`` is a plain function over a typed Config; ``mlcycle train`` is a thin Hydra
wrapper around it and tests call it directly. It knows no stage by name: each stage
module declares what it reads, does and caches (``stages.base.Stage``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlcycle
from mlcycle import report, stages
from mlcycle.config.load import as_dict, flatten
from mlcycle.config.schema import Config
from mlcycle.core import threads
from mlcycle.core.evaluation import primary_metric
from mlcycle.core.masking import mask_text, mask_tree, mask_values
from mlcycle.errors import PipelineTerminated, first_line
from mlcycle.stages.base import State
from mlcycle.tracking import hygiene, lineage, ui
from mlcycle.tracking.artifacts import log_artifact_dict
from mlcycle.tracking.cache import StageCache
from mlcycle.tracking.registry import (
    ALIASES_TAG,
    PROMOTED_TAG,
    REGISTERED_MODEL_TAG,
    REGISTERED_VERSION_TAG,
    TAG_ROOT_RUN,
)
from mlcycle.tracking.remote import check_tracking_store, resolve_tracking_uri
from mlcycle.tracking.runs import (
    MAX_TAG_LENGTH,
    NOTE_TAG,
    TIME_METRIC,
    root_run,
    stage_run,
    stage_time_metric,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    state: State


def run(cfg: Config) -> PipelineResult:
    """Run the configured stages under one root run and return the final state."""
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    plan = [stages.get(name) for name in cfg.stages]
    for stage in plan:  # a setting that cannot work with this store: before any run
        stage.precheck(cfg, uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)  # fail in seconds, before any work
    experiment_id = hygiene.open_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location, "pipeline")
    resolved = as_dict(cfg)
    made_from = {
        **lineage.git_state(Path(cfg.paths.root)),
        "mlcycle_version": mlcycle.__version__,
        "config_fingerprint": lineage.fingerprint(resolved),
        "source_digest": lineage.source_digest(),
    }
    run_name = cfg.mlflow.run_name or default_run_name(cfg.data.name, cfg.model.name)
    root_tags = lineage.lineage_tags(made_from) | {lineage.DATA_NAME_TAG: cfg.data.name} | mask_values(dict(cfg.mlflow.tags))

    # report.at_end comes first so it runs after the root run has ended (status, error tag)
    threads.preset(cfg.threads_per_fit)  # for the processes it starts (tune workers)
    with report.at_end(cfg.report.enabled) as report_hook, sigterm_raises(), threads.limited(cfg.threads_per_fit), \
            root_run(experiment_id, run_name, root_tags) as root:
        report_hook.root_run_id = root.run_id  # report.html is logged on it, also on failure
        log.info("root run %s in experiment %s (%s)", root.run_id, experiment_id, mask_text(uri))
        root.log.log_params(mask_values(flatten(cfg)))  # no password in a URI reaches the store
        log_artifact_dict(mask_tree(resolved), "config.yaml")
        lineage.log_environment(root.log.client, root.run_id)
        root.log.flush()  # the config is visible in the UI while the stages run
        state = State(lineage={**made_from, TAG_ROOT_RUN: root.run_id})
        cache = StageCache(cfg, root, made_from)
        current: str | None = None
        failure: BaseException | None = None
        try:
            for stage in plan:
                current, started = stage.name, time.perf_counter()
                log.info("stage %s ...", stage.name)
                try:
                    with stage_run(root, stage.name) as child:
                        state = cache.run(stage, state, child)
                        seconds = time.perf_counter() - started
                        child.log.log_metrics({TIME_METRIC: seconds})
                except BaseException as exc:  # PipelineTerminated too: the CLI names the stage
                    exc.add_note(f"stage {stage.name}")
                    raise
                root.log.log_metrics({stage_time_metric(stage.name): seconds})
                root.log.set_tags(root_tags_of(state))
                log.info("stage %s done in %.1f s", stage.name, seconds)
            current = None
            root.log.log_metrics(headline_metrics(state))
        except BaseException as exc:
            failure = exc
            raise
        finally:  # the run page's description, also for a failed run: what is known
            report_on = cfg.report.enabled and (failure is None or isinstance(failure, Exception))  # report.at_end
            try:
                root.log.set_tags({NOTE_TAG: describe(cfg, state, root, failure, current, report_on)})
            except Exception as exc:  # never in place of the run's own outcome
                log.warning("could not write the description of run %s: %s", root.run_id, exc)
    return PipelineResult(root.run_id, experiment_id, uri, state)


def default_run_name(data_name: str, model_name: str) -> str:
    """``hgb-ecommerce``: the model family first and short, so the runs table's narrow name
    column shows what differs between runs of one experiment."""
    words = [w for w in model_name.split("_") if w]
    short = "".join(w[0] for w in words) if len(words) > 1 else model_name
    return f"{short}-{data_name}"


def describe(cfg: Config, state: State, root, failure: BaseException | None, stage: str | None,
             report_on: bool) -> str:
    """The root run's description (markdown, on its run page; the UI shows about four lines
    before "show more"): data, model, headline test metrics, the registered version and the
    gate's verdict, where the report is; for a failed run, the error first."""
    lines = []
    if failure is not None:
        status = "KILLED" if isinstance(failure, PipelineTerminated | KeyboardInterrupt) else "FAILED"
        lines.append(f"**{status}**" + (f" in stage `{stage}`" if stage else "") + f": {mask_text(first_line(failure))[:300]}")
    splits = state.splits
    rows = f" · {sum(len(f) for f in (splits.train, splits.validation, splits.test)):,} rows" if splits else ""
    head = f"**{cfg.model.name}** on **{cfg.data.name}**{rows}"
    primary = state.metric
    if primary is None and state.schema is not None:
        with contextlib.suppress(ValueError):  # a metric the task lacks: the tune stage says so
            primary = primary_metric(cfg.evaluate.primary_metric, state.schema.task)
    if primary in state.test_metrics:
        head += f" · test {primary} **{state.test_metrics[primary]:.4f}**"
    if state.cv_score is not None:
        head += f" · cv {state.metric} {state.cv_score:.4f}"
    lines.append(head)
    if state.registered_version:
        link = ui.model_version_path(state.registered_name, state.registered_version)
        verdict = "**promoted**" if state.promoted else "**not promoted**"
        lines.append(f"registered [{state.registered_name} v{state.registered_version}]({link}) "
                     f"({', '.join(state.aliases)}): {verdict}" + (f": {state.gate_summary}" if state.gate_summary else ""))
    if others := {k: v for k, v in state.test_metrics.items() if k != primary}:
        lines.append("test: " + " · ".join(f"{k} {v:.4f}" for k, v in others.items()))
    if report_on:
        path = ui.run_path(root.experiment_id, root.run_id, report.REPORT_ARTIFACT)
        where = f"report: [{report.REPORT_ARTIFACT}]({path})"
    else:
        where = f"report: none written (`mlcycle report {root.run_id}` writes one)"
    lines.append(f"{where} · stage times: metrics `{stage_time_metric('<stage>')}`")
    return "\n".join(f"- {line}" for line in lines)[:MAX_TAG_LENGTH]


def headline_metrics(state: State) -> dict[str, float]:
    """What the UI's run table compares: the chosen model's CV score and its test metrics."""
    out = {f"test_{k}": v for k, v in state.test_metrics.items()}
    if state.cv_score is not None and state.metric:
        out[f"cv_{state.metric}"] = state.cv_score
    return out


def root_tags_of(state: State) -> dict[str, str]:
    """What the root run says about the data it read and the version it registered."""
    tags = {}
    if state.data_digest:
        tags |= {lineage.DATA_DIGEST_TAG: state.data_digest, lineage.DATA_SOURCE_TAG: state.data.source}
    if state.registered_version:
        tags |= {
            REGISTERED_MODEL_TAG: state.registered_name, REGISTERED_VERSION_TAG: state.registered_version,
            ALIASES_TAG: ",".join(state.aliases), PROMOTED_TAG: str(state.promoted).lower(),
        }
    return tags


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
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
