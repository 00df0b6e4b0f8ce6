"""The run tree: how mlcycle creates, tags, ends and finds its MLflow runs. Each fact once.

* tag names (``*_TAG``) and run kinds (``KIND_*``);
* where runs go: ``prepare_experiment``;
* creating: ``root_run`` (attaches to the run ``mlflow run`` created) and ``stage_run`` (a
  child created with an explicit parent id, never via ``nested=True``: the fluent stack is
  thread-local and ``MLFLOW_RUN_ID`` turns a nested start into a resume); both go through
  ``create_run_once``, which removes the duplicate a retried ``runs/create`` leaves;
* ``RunLog``: params/metrics/tags buffered and sent in one ``log_batch`` per run;
* ending: FINISHED, FAILED (error message as a tag) or KILLED (SIGTERM), buffered values
  flushed in every case. Root and stage runs carry their owner process from creation
  (``core.liveness``), so runs a SIGKILL left RUNNING can be told from live ones
  (``hygiene``);
* finding: ``root_of``, ``children``, ``find_stage``, and ``outputs_run`` /
  ``stage_outputs``: the run that holds a stage's outputs (itself, or the earlier run a
  cache hit reused), which every reader of a pipeline's data goes through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from mlcycle.core import liveness
from mlcycle.errors import PipelineTerminated

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI
ERROR_TAG = "mlcycle.error"
KIND_TAG = "mlcycle.run_kind"
STAGE_TAG = "mlcycle.stage"  # on stage runs: the stage's name
STUDY_TAG = "mlcycle.study_name"  # on tune runs: the Optuna study they worked on
TOKEN_TAG = "mlcycle.create_token"  # unique per created run: finds the twin of a retried create
GHOST_TAG = "mlcycle.ghost"  # on a deleted duplicate: why it was removed
SOURCE_TAG = "mlcycle.cache_source_run"  # on a stage run served from the step cache: the run it reused

# Wall time, as metrics named to sort after the headline `cv_*`/`test_*` in the UI's lists:
# a stage run's (and a scoring run's) own, and each stage's on the root run. Runs made
# before carried `duration_seconds` / `duration_<stage>_seconds`: readers take both.
TIME_METRIC = "time_seconds"
TIME_METRICS = (TIME_METRIC, "duration_seconds")


def stage_time_metric(stage: str) -> str:
    return f"time_{stage}_seconds"


def seconds_of(metrics: dict[str, float], stage: str | None = None) -> float | None:
    """A run's wall time (``stage``: that stage's, from its root run's metrics), new name or old."""
    names = (stage_time_metric(stage), f"duration_{stage}_seconds") if stage else TIME_METRICS
    return next((metrics[n] for n in names if n in metrics), None)


# values of KIND_TAG
KIND_PIPELINE, KIND_STAGE, KIND_TRIAL = "pipeline", "stage", "trial"
KIND_MONITOR, KIND_PREDICT, KIND_TUNE_WORKER = "monitor", "predict", "tune_worker"
# the kinds that are the top of an mlcycle tree, even when an orchestrator's run is their
# parent (a Kubeflow Pipelines task run: KFP nests each task's run under the pipeline's)
ROOT_KINDS = frozenset({KIND_PIPELINE, KIND_MONITOR, KIND_PREDICT, KIND_TUNE_WORKER})

MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000


# --------------------------------------------------------------------------- location
def is_server_uri(uri: str) -> bool:
    """A tracking server (HTTP), as opposed to a store this process opens itself."""
    return str(uri).startswith(("http://", "https://"))


def is_local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def connect(tracking_uri: str) -> MlflowClient:
    """Point MLflow (the fluent API, and a client) at a store, quietly: no run URL printed
    after each run, no progress bar per artifact download."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri)


def prepare_experiment(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> str:
    """Point MLflow at the store and return the experiment id to log into.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the experiment is that run's. Otherwise the
    configured experiment, created if needed, with artifacts beside a local store.
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = connect(tracking_uri)
    if run_id := os.environ.get("MLFLOW_RUN_ID"):
        return client.get_run(run_id).info.experiment_id
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if artifact_location and is_local_store(tracking_uri):
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment_name) or "experiment"
        location = (Path(artifact_location) / safe).resolve().as_uri()
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except MlflowException:
        # another process (a multirun job, a second pipeline) created it first
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


# --------------------------------------------------------------------------- buffered logging
@dataclass
class RunLog:
    """Params, metrics and tags for one run, sent in as few ``log_batch`` calls as possible."""

    client: MlflowClient
    run_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def log_params(self, values: dict[str, Any]) -> None:
        self.params.update({k: param_text(v) for k, v in values.items()})

    def metric(self, **values: float) -> None:
        self.log_metrics(values)

    def log_metrics(self, values: dict[str, float]) -> None:
        self.metrics.update({k: float(v) for k, v in values.items() if v is not None})

    def set_tags(self, values: dict[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in values.items()})

    def flush(self) -> None:
        """Send what is buffered; safe to call repeatedly."""
        if not (self.params or self.metrics or self.tags):
            return
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in self.params.items()]
        # by name: the run page lists a run's metrics in the order they were stored
        metrics = [Metric(k, v, now, 0) for k, v in sorted(self.metrics.items())]
        tags = [RunTag(k, v) for k, v in self.tags.items()]
        # log_batch limits: 100 params, 100 tags, 1000 entities in all
        for i in range(0, max(len(params), len(tags), len(metrics), 1), 100):
            self.client.log_batch(
                self.run_id, metrics=metrics[i : i + 100], params=params[i : i + 100], tags=tags[i : i + 100]
            )
        self.params.clear()
        self.metrics.clear()
        self.tags.clear()


def param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else str(value)
    return text[:MAX_PARAM_LENGTH]


# --------------------------------------------------------------------------- creating runs
@dataclass
class ActiveRun:
    run_id: str
    experiment_id: str
    log: RunLog


@contextlib.contextmanager
def root_run(experiment_id: str, run_name: str | None, tags: dict[str, str], kind: str = KIND_PIPELINE) -> Iterator[ActiveRun]:
    """A ROOT run (a pipeline's, a monitoring run, a scoring run). When ``MLFLOW_RUN_ID``
    names a run (``mlflow run``; a Kubeflow Pipelines task with KFP's MLflow integration),
    that run is the root, wherever it sits. Tagged at creation with its owner process."""
    from mlflow.tracking.context.registry import resolve_tags

    attached = "MLFLOW_RUN_ID" in os.environ
    client = MlflowClient()
    owner = liveness.current().tags()
    if attached:
        run = mlflow.start_run(run_name=run_name)
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in owner.items()])
    else:
        created = create_run_once(client, experiment_id, run_name=run_name, tags=resolve_tags({**owner, KIND_TAG: kind}))
        run = mlflow.start_run(run_id=created.info.run_id)
    active = ActiveRun(run.info.run_id, run.info.experiment_id, RunLog(client, run.info.run_id))
    active.log.set_tags({KIND_TAG: kind, **tags})
    if attached and run_name:
        active.log.set_tags({RUN_NAME_TAG: run_name})
    with _ending(active):
        yield active


@contextlib.contextmanager
def stage_run(root: ActiveRun, name: str) -> Iterator[ActiveRun]:
    """A CHILD run of ``root`` for one stage, active (fluent API) while the stage runs."""
    client = root.log.client
    created = create_run_once(
        client, root.experiment_id, run_name=name,
        tags={PARENT_TAG: root.run_id, STAGE_TAG: name, KIND_TAG: KIND_STAGE, **liveness.current().tags()},
    )
    run_id = created.info.run_id
    mlflow.start_run(run_id=run_id, nested=True)
    active = ActiveRun(run_id, root.experiment_id, RunLog(client, run_id))
    with _ending(active):
        yield active


@contextlib.contextmanager
def _ending(active: ActiveRun) -> Iterator[None]:
    """End the run FINISHED, FAILED or KILLED; flush buffered values first in every case."""
    status = RunStatus.to_string(RunStatus.FINISHED)
    try:
        yield
    except PipelineTerminated:
        status = RunStatus.to_string(RunStatus.KILLED)
        active.log.set_tags({ERROR_TAG: "terminated by SIGTERM"})
        raise
    except BaseException as exc:
        status = RunStatus.to_string(RunStatus.FAILED)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        active.log.set_tags({ERROR_TAG: message[:MAX_TAG_LENGTH]})
        raise
    finally:
        try:
            active.log.flush()
        finally:
            mlflow.end_run(status=status)


# --------------------------------------------------------------------------- exactly once
# MLflow's HTTP client retries POSTs too: when a `runs/create` committed on the server but
# its response was lost, the retry creates a second run, a ghost (RUNNING forever, empty).
# Every run mlcycle creates carries a fresh token; over HTTP, mlcycle then searches for the
# token and deletes every run holding it but the one it logs to. A ghost that commits even
# later keeps its token and status; `mlcycle runs close-stale` deletes it then (hygiene).
def new_token() -> str:
    return uuid.uuid4().hex


def create_run_once(
    client: MlflowClient, experiment_id: str, *, run_name: str | None = None, tags: dict[str, str] | None = None,
    start_time: int | None = None,
) -> Run:
    """``client.create_run`` that leaves exactly one run behind, retries or not."""
    token = new_token()
    run = client.create_run(experiment_id, start_time=start_time, tags={**(tags or {}), TOKEN_TAG: token}, run_name=run_name)
    if is_server_uri(client.tracking_uri):  # local stores make no HTTP requests: nothing to retry
        remove_ghosts(client, experiment_id, {token: run.info.run_id})
    return run


def remove_ghosts(client: MlflowClient, experiment_id: str, kept: dict[str, str], parent_run_id: str | None = None) -> list[str]:
    """Delete runs holding one of ``kept``'s tokens but not its run id; return their ids.

    With ``parent_run_id``, one search over that run's children covers any number of
    tokens (trial runs); without, one search per token.
    """
    if not kept:
        return []
    if parent_run_id is not None:
        filters = [f"tags.`{PARENT_TAG}` = '{parent_run_id}'"]
    else:
        filters = [f"tags.`{TOKEN_TAG}` = '{token}'" for token in kept]
    ghosts = []
    for filter_string in filters:
        for run in search_all(client, [experiment_id], filter_string):
            token = run.data.tags.get(TOKEN_TAG)
            if token in kept and run.info.run_id != kept[token]:
                ghosts.append(run.info.run_id)
    for run_id in ghosts:
        log.warning("deleting ghost run %s (a duplicate created by a retried request)", run_id)
        end_ghost(client, run_id, "duplicate created by a retried request")
    return ghosts


def end_ghost(client: MlflowClient, run_id: str, reason: str) -> None:
    """End a ghost FAILED with the reason, then delete it (restorable, never RUNNING)."""
    client.log_batch(run_id, tags=[RunTag(GHOST_TAG, reason)])
    client.set_terminated(run_id, status="FAILED")
    client.delete_run(run_id)


# --------------------------------------------------------------------------- finding runs
def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str, **kwargs: Any) -> list[Run]:
    """Every run matching ``filter_string``, across result pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token, **kwargs)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def children(client: MlflowClient, experiment_id: str, run_id: str) -> list[Run]:
    """Direct children of a run, oldest first."""
    runs = search_all(client, [experiment_id], f"tags.`{PARENT_TAG}` = '{run_id}'")
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_name or ""))


def root_of(client: MlflowClient, run_id: str) -> Run:
    """The root of the tree that holds ``run_id``: up the parent tags to a run of a root
    kind (pipeline, monitor, predict, tune worker) or a run without a parent (a parent that
    no longer exists ends the walk too). A missing ``run_id`` raises MlflowException."""
    run = client.get_run(run_id)
    seen = {run.info.run_id}
    while run.data.tags.get(KIND_TAG) not in ROOT_KINDS and (parent := run.data.tags.get(PARENT_TAG)):
        if parent in seen or len(seen) > 10:
            break  # a cycle, or nesting no mlcycle tree has
        seen.add(parent)
        try:
            run = client.get_run(parent)
        except MlflowException:
            break  # the parent was deleted: this run is the top of what is left
    return run


def find_stage(client: MlflowClient, experiment_id: str, root_run_id: str, stage: str) -> Run | None:
    """A pipeline's run of ``stage`` (None if that stage did not run)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{root_run_id}' and tags.`{STAGE_TAG}` = '{stage}'",
        max_results=1,
    )
    return runs[0] if runs else None


def outputs_run(client: MlflowClient, run: Run) -> Run:
    """The run that holds a stage run's outputs and artifacts: itself, or on a cache hit the
    earlier run it reused (itself again when that one is gone)."""
    source = run.data.tags.get(SOURCE_TAG)
    if source and source != run.info.run_id:
        try:
            return client.get_run(source)
        except MlflowException:
            return run
    return run


def stage_outputs(client: MlflowClient, root_run_id: str, stage: str) -> Run | None:
    """The run holding the outputs of a pipeline's ``stage`` (None if it did not run)."""
    root = client.get_run(root_run_id)
    found = find_stage(client, root.info.experiment_id, root_run_id, stage)
    return outputs_run(client, found) if found is not None else None
