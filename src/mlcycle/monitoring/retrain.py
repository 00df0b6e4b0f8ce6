"""The retrain a monitoring run triggers (or ``mlcycle retrain <run id>`` asks for).

``retrain(cfg, monitoring_run_id)``: the reference data plus the monitoring run's labelled
batch, trained with the watched model's own resolved config as a root run tagged
``mlcycle.triggered_by=<monitoring run>``: a new run, or the one ``MLFLOW_RUN_ID`` names
when that is not the monitoring run (an orchestrator task's run). Never twice for the same monitoring run. Whether
the new version becomes champion is the registry's decision; this module only reads the
aliases before and after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle import pipeline
from mlcycle.config.load import from_resolved
from mlcycle.config.monitor import MonitorAppConfig
from mlcycle.config.schema import Task
from mlcycle.core import drift
from mlcycle.errors import DataError, LineageError, MlcycleError
from mlcycle.monitoring import reference
from mlcycle.tracking.registry import alias_version
from mlcycle.tracking.remote import check_tracking_store, resolve_tracking_uri
from mlcycle.tracking.runs import KIND_MONITOR, KIND_TAG, connect

log = logging.getLogger(__name__)

# What a monitoring run records (monitor.py writes it; a retrain reads it back).
VERDICT_TAG = "mlcycle.verdict"
MONITORED_MODEL_TAG = "mlcycle.monitored_model"
MONITORED_VERSION_TAG = "mlcycle.monitored_version"
RETRAIN_TAG = "mlcycle.retrain"  # what became of its retrain
BATCH_ARTIFACT = "batch/batch.parquet"  # the batch, aligned to the reference's columns, labels kept
TRIGGERED_BY_TAG = "mlcycle.triggered_by"  # on a retrain's root run: the monitoring run
RETRAIN_RUN_TAG = "mlcycle.retrain_run_id"  # on the monitoring run: the retrain's root run


@dataclass(frozen=True)
class RetrainOutcome:
    run_id: str
    version: str | None  # the registered version the retrain produced
    champion_before: str | None
    champion_after: str | None
    data_rows: int

    @property
    def promoted(self) -> bool:
        return self.version is not None and self.champion_after == self.version != self.champion_before


def retrain(cfg: MonitorAppConfig, monitoring_run_id: str, announce: Callable[[str], None] | None = None) -> RetrainOutcome:
    """Train on reference + the monitoring run's labelled batch, as a new root run.

    Refuses when the monitoring run already triggered a retrain that did not fail.
    ``announce`` gets one line as the training starts (the pipeline's own output follows).
    """
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)
    client = connect(uri)
    try:
        mon = client.get_run(monitoring_run_id)
    except MlflowException:
        raise LineageError(f"monitoring run {monitoring_run_id} not found in {uri}") from None
    if mon.data.tags.get(KIND_TAG) != KIND_MONITOR:
        raise LineageError(f"run {monitoring_run_id} is not a monitoring run (tag {KIND_TAG}={KIND_MONITOR})")
    earlier = triggered_runs(client, monitoring_run_id)
    live = [r for r in earlier if r.info.status in ("RUNNING", "FINISHED", "SCHEDULED")]
    if live:
        raise MlcycleError(
            f"monitoring run {monitoring_run_id} already triggered run {live[0].info.run_id} "
            f"({live[0].info.status}); one retrain per monitoring run"
        )
    tags = mon.data.tags
    name, version = tags[MONITORED_MODEL_TAG], tags[MONITORED_VERSION_TAG]
    model = reference.resolve_model(client, name, None, version)
    ref = reference.load_reference(client, model)
    schema = ref.schema

    with tempfile.TemporaryDirectory() as tmp:
        try:
            batch = pd.read_parquet(client.download_artifacts(monitoring_run_id, BATCH_ARTIFACT, tmp))
        except (MlflowException, OSError):
            raise LineageError(f"monitoring run {monitoring_run_id} has no {BATCH_ARTIFACT} artifact") from None
    if schema.target not in batch.columns or batch[schema.target].notna().sum() == 0:
        raise DataError(f"monitoring run {monitoring_run_id}: the batch has no labels ({schema.target!r}); nothing to retrain on")
    batch = drift.align_batch(batch, ref.kinds, schema.target, "monitoring batch")[0].assign(
        **{schema.target: drift.align_labels(batch[schema.target], schema.task.value, schema.classes, "monitoring batch", schema.target)}
    )
    batch = batch[batch[schema.target].notna()]
    columns = [*schema.features, schema.target]
    kept = ref.all_rows[columns]
    if cfg.monitor.retrain_reference_fraction < 1:  # give the new data more weight
        kept = kept.sample(frac=cfg.monitor.retrain_reference_fraction, random_state=cfg.seed)
    combined = pd.concat([kept, batch[columns]], ignore_index=True)
    if schema.task is not Task.regression and all(isinstance(c, int | np.integer) for c in schema.classes):
        combined[schema.target] = combined[schema.target].astype(int)
    out_dir = Path(cfg.paths.data_dir) / "retrain"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"{monitoring_run_id}.parquet"
    combined.to_parquet(data_path, index=False)

    experiment = client.get_experiment(mon.info.experiment_id)
    resolved = dict(ref.config)
    resolved["data"] = {
        **resolved.get("data", {}),
        "source": "file",
        "path": str(data_path),
        "drop_columns": [],
        "column_types": ref.kinds,
        "task": schema.task.value,
    }
    resolved["registry"] = {**resolved.get("registry", {}), "model_name": name}
    resolved["paths"] = asdict(cfg.paths)
    resolved["mlflow"] = {
        **asdict(cfg.mlflow),
        "experiment_name": experiment.name,
        "run_name": "retrain-" + pipeline.default_run_name(
            resolved["data"].get("name", "data"), resolved.get("model", {}).get("name", "model")),
        "tags": {
            **cfg.mlflow.tags,
            TRIGGERED_BY_TAG: monitoring_run_id,
            "mlcycle.trigger_verdict": tags.get(VERDICT_TAG, ""),
            "mlcycle.retrain_rows": f"{len(kept)} reference + {len(batch)} batch",
        },
    }
    pipe_cfg = from_resolved(resolved, cfg.monitor.retrain_overrides)
    champion_alias = pipe_cfg.registry.champion_alias
    before = alias_version(client, name, champion_alias)
    (announce or log.info)(
        f"retraining: {name} with the config of v{version} on {len(kept)} reference + {len(batch)} batch rows, "
        f"as a new pipeline run"
    )
    with _detached_from(monitoring_run_id):
        try:
            result = pipeline.run(pipe_cfg)
        except BaseException:
            failed = triggered_runs(client, monitoring_run_id)
            if failed:
                client.set_tag(monitoring_run_id, RETRAIN_RUN_TAG, failed[-1].info.run_id)
            client.set_tag(monitoring_run_id, RETRAIN_TAG, "failed")
            raise
    after = alias_version(client, name, champion_alias)
    outcome = RetrainOutcome(result.run_id, result.state.registered_version, before, after, len(combined))
    for key, value in {
        RETRAIN_RUN_TAG: result.run_id,
        RETRAIN_TAG: "promoted" if outcome.promoted else "not promoted",
        "mlcycle.retrain_version": outcome.version or "",
        "mlcycle.champion_before": before or "",
        "mlcycle.champion_after": after or "",
    }.items():
        client.set_tag(monitoring_run_id, key, value)
    return outcome


def triggered_runs(client: MlflowClient, monitoring_run_id: str) -> list:
    """Root runs that ``monitoring_run_id`` triggered, oldest first, in any experiment."""
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    runs = client.search_runs(experiments, filter_string=f"tags.`{TRIGGERED_BY_TAG}` = '{monitoring_run_id}'", max_results=100)
    return sorted(runs, key=lambda r: r.info.start_time)


@contextlib.contextmanager
def _detached_from(monitoring_run_id: str) -> Iterator[None]:
    """The retrain's root is the run ``MLFLOW_RUN_ID`` names (a KFP task's run, as for
    ``mlcycle train``), unless that is the monitoring run itself: under ``mlflow run -e
    monitor`` the retrain it triggers must be a NEW root run, not attach to it."""
    saved = os.environ.get("MLFLOW_RUN_ID")
    if saved != monitoring_run_id:
        yield
        return
    os.environ.pop("MLFLOW_RUN_ID")
    try:
        yield
    finally:
        os.environ["MLFLOW_RUN_ID"] = saved
