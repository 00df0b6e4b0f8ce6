"""Every MLflow tracking call that is not about the model registry.

* where runs go: ``resolve_tracking_uri`` and ``prepare_experiment``;
* the run tree: ``root_run`` (attaches to the run ``mlflow run`` created) and ``stage_run``
  (a child created with an explicit parent id, never via ``nested=True``: see DESIGN.md);
* ``RunLog``: params/metrics/tags buffered and sent in one ``log_batch`` per run;
* lineage tags (git commit, package version, config fingerprint);
* stale runs: every pipeline and stage run carries its owner process (``mlcycle.owner``);
  ``close_stale_runs`` / ``close_run_tree`` end the runs a SIGKILLed process left RUNNING.

Runs always end: FINISHED, FAILED (error message as a tag) or KILLED (SIGTERM). Root and
stage runs carry their owner process as tags (``liveness``) so that runs left RUNNING by a
killed process can be found and closed (``stale``); every run carries a create token so that
duplicates from a retried ``runs/create`` are removed (``idempotent``).
After a SIGKILL, the next run that finds them (a resumed study) ends them FAILED too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from mlcycle import liveness
from mlcycle.errors import PipelineTerminated
from mlcycle.idempotent import create_run_once
from mlcycle.remote import resolve_tracking_uri  # noqa: F401 - part of this module's API

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
ERROR_TAG = "mlcycle.error"
STAGE_TAG = "mlcycle.stage"
KIND_TAG = "mlcycle.run_kind"  # pipeline | stage | trial
STUDY_TAG = "mlcycle.study_name"  # on tune runs: the Optuna study they worked on
CLOSED_TAG = "mlcycle.closed_stale_by"  # who ended a run its dead owner left RUNNING
MAX_PARAM_LENGTH = 6000


# --------------------------------------------------------------------------- location
def is_local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def prepare_experiment(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> str:
    """Point MLflow at the store and return the experiment id to log into.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the experiment is that run's. Otherwise the
    configured experiment, created if needed, with artifacts beside a local store.
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    if run_id := os.environ.get("MLFLOW_RUN_ID"):
        return client.get_run(run_id).info.experiment_id
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if artifact_location and is_local_store(tracking_uri):
        location = (Path(artifact_location) / _safe_name(experiment_name)).resolve().as_uri()
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # another process (a multirun job, a second pipeline) created it first
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "experiment"


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
        metrics = [Metric(k, v, now, 0) for k, v in self.metrics.items()]
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


# --------------------------------------------------------------------------- the run tree
@dataclass
class ActiveRun:
    run_id: str
    experiment_id: str
    log: RunLog


@contextlib.contextmanager
def root_run(experiment_id: str, run_name: str | None, tags: dict[str, str]) -> Iterator[ActiveRun]:
    """The pipeline's ROOT run; under ``mlflow run`` the run that ``mlflow run`` created.

    Tagged at creation with its owner process (``liveness``), so ``mlcycle runs close-stale``
    can tell a run whose process died from one still working.
    """
    from mlflow.tracking.context.registry import resolve_tags

    attached = "MLFLOW_RUN_ID" in os.environ
    client = MlflowClient()
    owner = liveness.current().tags()
    if attached:
        run = mlflow.start_run(run_name=run_name)
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in owner.items()])
    else:
        created = create_run_once(
            client, experiment_id, run_name=run_name, tags=resolve_tags({**owner, KIND_TAG: "pipeline"})
        )
        run = mlflow.start_run(run_id=created.info.run_id)
    active = ActiveRun(run.info.run_id, run.info.experiment_id, RunLog(client, run.info.run_id))
    active.log.set_tags({KIND_TAG: "pipeline", **tags})
    if attached and run_name:
        active.log.set_tags({RUN_NAME_TAG: run_name})
    with _ending(active, fluent=True):
        yield active


@contextlib.contextmanager
def stage_run(root: ActiveRun, name: str) -> Iterator[ActiveRun]:
    """A CHILD run of ``root`` for one stage, active (fluent API) while the stage runs."""
    client = root.log.client
    created = create_run_once(
        client,
        root.experiment_id,
        run_name=name,
        tags={PARENT_TAG: root.run_id, STAGE_TAG: name, KIND_TAG: "stage", **liveness.current().tags()},
    )
    run_id = created.info.run_id
    mlflow.start_run(run_id=run_id, nested=True)
    active = ActiveRun(run_id, root.experiment_id, RunLog(client, run_id))
    with _ending(active, fluent=True):
        yield active


@contextlib.contextmanager
def _ending(active: ActiveRun, fluent: bool) -> Iterator[None]:
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
        active.log.set_tags({ERROR_TAG: message[:5000]})
        raise
    finally:
        try:
            active.log.flush()
        finally:
            if fluent:
                mlflow.end_run(status=status)
            else:
                active.log.client.set_terminated(active.run_id, status=status)


# --------------------------------------------------------------------------- stale runs
def close_run_tree(client: MlflowClient, run_id: str, reason: str, status: str = "FAILED") -> list[str]:
    """End every RUNNING run of the pipeline tree that holds ``run_id``: from its root run
    down through the stage runs (trial runs are written whole and never stay RUNNING).
    Each gets ``mlcycle.error`` = ``reason`` (unless it has an error already) and the
    closer's owner token. Returns the ids ended."""
    run = client.get_run(run_id)
    seen = {run.info.run_id}
    while (parent := run.data.tags.get(PARENT_TAG)) and parent not in seen:
        seen.add(parent)
        try:
            run = client.get_run(parent)
        except mlflow.exceptions.MlflowException:
            break  # the parent was deleted: this run is the top of what is left
    closed: list[str] = []
    frontier = [run]
    while frontier:
        current = frontier.pop()
        if current.info.status == "RUNNING":
            tags = {CLOSED_TAG: liveness.owner_token()}
            if ERROR_TAG not in current.data.tags:
                tags[ERROR_TAG] = reason[:5000]
            client.log_batch(current.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            client.set_terminated(current.info.run_id, status=status)
            closed.append(current.info.run_id)
        if current.data.tags.get(KIND_TAG) in ("pipeline", "stage", None):
            frontier.extend(
                r for r in runs_of(client, current.info.experiment_id, current.info.run_id)
                if r.data.tags.get(KIND_TAG) != "trial" or r.info.status == "RUNNING"
            )
    return closed


def close_stale_runs(client: MlflowClient, runs: list, reason: str) -> tuple[list[str], list[str]]:
    """For each RUNNING run whose owner process is certainly gone (same host, pid dead),
    end its whole tree FAILED (``close_run_tree``). Returns (ids ended, ids left RUNNING
    because their owner runs elsewhere or is unknown)."""
    closed: list[str] = []
    unknown: list[str] = []
    for run in runs:
        if run.info.status != "RUNNING" or run.info.run_id in closed:
            continue
        owner = liveness.from_tags(run.data.tags)
        alive = liveness.is_alive(owner) if owner is not None else None
        if alive is False:
            closed.extend(close_run_tree(client, run.info.run_id, f"{reason} ({owner.describe()} is gone)"))
        elif alive is None:
            unknown.append(run.info.run_id)
    return closed, unknown


# --------------------------------------------------------------------------- lineage
def git_state(root: Path) -> dict[str, str]:
    """Commit and dirty flag of the checkout at ``root`` ("unknown" outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(status)).lower()}


def runs_of(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    """Direct children of a run, oldest first."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (a resolved config section, ...)."""
    payload = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def stage_run_id(client: MlflowClient, experiment_id: str, root_run_id: str, stage: str) -> str | None:
    """The id of a pipeline's stage run (``None`` if that stage did not run)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{root_run_id}' and tags.`{STAGE_TAG}` = '{stage}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


# --------------------------------------------------------------------------- artifacts
def log_artifact_files(paths: list[Path], folder: str) -> None:
    """Files as artifacts of the active run, under ``folder``."""
    for path in paths:
        mlflow.log_artifact(str(path), folder)


def download_artifact(run_id: str, path: str, dst: Path) -> Path:
    """One artifact of a run, downloaded into ``dst``."""
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))


def log_artifact_dict(obj: dict, path: str) -> None:
    """A JSON/YAML artifact on the active run, keys in their order.

    ``mlflow.log_dict`` sorts YAML keys, and order matters in a config: the order of
    ``data.derived_features`` is the column order, a search space's is Optuna's draw order.
    A config.yaml that lost it does not reproduce its run exactly.
    """
    if path.endswith((".yaml", ".yml")):
        import yaml

        mlflow.log_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True), path)
    else:
        mlflow.log_dict(obj, path)


def log_figures(figures: dict, folder: str) -> None:
    """Log matplotlib figures as PNG artifacts on the active run and close them."""
    import matplotlib.pyplot as plt

    for name, fig in figures.items():
        try:
            mlflow.log_figure(fig, f"{folder}/{name}")
        finally:
            plt.close(fig)


def log_frames(frames: dict, folder: str) -> None:
    """Log DataFrames as ``<folder>/<name>.parquet`` artifacts on the active run."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in frames.items():
            frame.to_parquet(Path(tmp) / f"{name}.parquet", index=False)
        mlflow.log_artifacts(tmp, folder)


def log_splits(splits, source: str, target: str, data_name: str) -> None:
    """Log train/validation/test as dataset inputs of the active run, in one call."""
    import mlflow.data
    from mlflow.data.sources import CodeDatasetSource, LocalArtifactDatasetSource

    from mlcycle.data import digest

    contexts = {"train": "training", "validation": "validation", "test": "test"}
    src = LocalArtifactDatasetSource(source) if Path(source).is_absolute() else CodeDatasetSource(tags={"mlflow.source.name": source})
    with warnings.catch_warnings():
        # integer targets (0/1 labels) are never missing: MLflow's schema hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        datasets = [
            mlflow.data.from_pandas(part, source=src, targets=target, name=f"{data_name}-{name}", digest=digest(part))
            for name, part in splits.items()
        ]
        mlflow.log_inputs(datasets=datasets, contexts=[contexts[n] for n, _ in splits.items()], tags_list=[None] * len(datasets))


def log_input_file(frame, path: Path, context: str) -> None:
    """Log a file the active run read (e.g. a batch to score) as a dataset input."""
    import warnings

    import mlflow.data
    from mlflow.data.sources import LocalArtifactDatasetSource

    from mlcycle.data import digest

    with warnings.catch_warnings():
        # integer columns in a file to score: MLflow's schema hint is about model signatures
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = mlflow.data.from_pandas(
            frame, source=LocalArtifactDatasetSource(str(path)), name=path.name, digest=digest(frame)
        )
        mlflow.log_input(dataset, context=context)
