"""The reference data of a model version: back to what it was trained on, through MLflow lineage.

version tag ``root_run_id`` -> the pipeline's root run (``config.yaml``, data source and
digest tags) -> its child run ``ingest`` (tag ``mlcycle.stage=ingest``) -> the column kinds,
target and task (params) and the splits it made (``splits/*.parquet`` artifacts).
No path is passed by hand: whatever store holds the model holds its reference data.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle.config.schema import Task
from mlcycle.core.data import CATEGORICAL, DATETIME, NUMERIC, Schema, Splits, coerce_column
from mlcycle.errors import LineageError
from mlcycle.stages import ingest as ingest_stage
from mlcycle.tracking.lineage import DATA_DIGEST_TAG, DATA_SOURCE_TAG
from mlcycle.tracking.registry import TAG_ROOT_RUN
from mlcycle.tracking.runs import find_stage, outputs_run, root_of


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    alias: str | None  # how it was asked for, when by alias
    run_id: str | None  # the run that logged the model (the register stage)
    root_run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def registered_metric(self, metric: str) -> float | None:
        """The test metric the version was registered with (version tag ``test_<metric>``)."""
        value = self.tags.get(f"test_{metric}")
        return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class Reference:
    """The training data of a model version and how it was configured."""

    root_run_id: str
    ingest_run_id: str
    experiment_id: str
    schema: Schema
    splits: Splits
    config: dict  # the root run's resolved config.yaml
    data_source: str
    data_digest: str

    @property
    def kinds(self) -> dict[str, str]:
        return {col: self.schema.kind_of(col) for col in self.schema.features}

    @property
    def fitted_rows(self) -> pd.DataFrame:
        """Train + validation: the rows the final model was fitted on."""
        return pd.concat([self.splits.train, self.splits.validation], ignore_index=True)

    @property
    def all_rows(self) -> pd.DataFrame:
        return pd.concat([part for _, part in self.splits.items()], ignore_index=True)


def resolve_model(client: MlflowClient, name: str, alias: str | None, version: str | None) -> ModelRef:
    """The version to watch: ``version`` when given, else the one ``alias`` points at."""
    try:
        if version:
            mv = client.get_model_version(name, str(version))
            alias = None
        else:
            mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        wanted = f"version {version}" if version else f"alias {alias!r}"
        known = _registered_names(client)
        hint = f"; registered models: {', '.join(known)}" if known else "; the registry is empty (run `mlcycle train` first)"
        raise LineageError(f"model {name!r} has no {wanted} in the registry{hint}") from None
    tags = dict(mv.tags or {})
    root = tags.get(TAG_ROOT_RUN) or (root_of(client, mv.run_id).info.run_id if mv.run_id else None)
    if not root:
        raise LineageError(f"{name} version {mv.version}: no root_run_id tag and no source run; cannot find its training data")
    return ModelRef(name, str(mv.version), alias, mv.run_id, root, tags)


def _registered_names(client: MlflowClient) -> list[str]:
    try:
        return sorted(m.name for m in client.search_registered_models(max_results=20))
    except MlflowException:
        return []


def load_reference(client: MlflowClient, model: ModelRef) -> Reference:
    """The splits, schema and config of the pipeline run that produced ``model``."""
    try:
        root = client.get_run(model.root_run_id)
    except MlflowException:
        raise LineageError(f"{model.name} version {model.version}: its root run {model.root_run_id} is not in this tracking store") from None
    experiment_id = root.info.experiment_id
    ingest = find_stage(client, experiment_id, root.info.run_id, ingest_stage.STAGE.name)
    if ingest is None:
        raise LineageError(f"{model.name} version {model.version}: root run {root.info.run_id} has no ingest stage run")
    params = ingest.data.params
    # A stage served from the step cache keeps its outputs on the run it reused.
    splits_run = outputs_run(client, ingest).info.run_id
    try:
        target, task = params["target"], Task(params["task"])
        kinds = {
            NUMERIC: _column_list(params.get("numeric_columns")),
            CATEGORICAL: _column_list(params.get("categorical_columns")),
            DATETIME: _column_list(params.get("datetime_columns")),
        }
    except (KeyError, ValueError) as exc:
        raise LineageError(f"ingest run {ingest.info.run_id}: missing or bad param {exc}") from None

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(splits_run, ingest_stage.SPLITS_DIR, tmp))
            frames = {name: pd.read_parquet(local / f"{name}.parquet") for name in ("train", "validation", "test")}
        except (MlflowException, OSError) as exc:
            raise LineageError(
                f"ingest run {splits_run}: cannot read its splits/*.parquet artifacts ({exc})"
            ) from None
        try:
            config_text = Path(client.download_artifacts(root.info.run_id, "config.yaml", tmp)).read_text()
        except (MlflowException, OSError):
            raise LineageError(f"root run {root.info.run_id}: no config.yaml artifact") from None
    typed = {name: _typed(frame, kinds, target, task) for name, frame in frames.items()}
    classes: tuple = ()
    if task is not Task.regression:
        labels = pd.concat([f[target] for f in typed.values()]).dropna().unique().tolist()
        classes = tuple(sorted(labels, key=str))
    schema = Schema(
        target=target, task=task, numeric=tuple(kinds[NUMERIC]), categorical=tuple(kinds[CATEGORICAL]),
        datetime=tuple(kinds[DATETIME]), classes=classes,
    )
    return Reference(
        root_run_id=root.info.run_id,
        ingest_run_id=ingest.info.run_id,
        experiment_id=experiment_id,
        schema=schema,
        splits=Splits(typed["train"], typed["validation"], typed["test"]),
        config=yaml.safe_load(config_text) or {},
        data_source=root.data.tags.get(DATA_SOURCE_TAG, params.get("source", "")),
        data_digest=root.data.tags.get(DATA_DIGEST_TAG, ""),
    )


def _column_list(value: str | None) -> list[str]:
    if not value:
        return []
    parsed = json.loads(value)
    if not isinstance(parsed, list):
        raise ValueError(value)
    return [str(c) for c in parsed]


def _typed(frame: pd.DataFrame, kinds: dict[str, list[str]], target: str, task: Task) -> pd.DataFrame:
    """Undo what a Parquet round trip changes: text comes back as pandas' ``str`` dtype.
    Each column gets the kind ingest gave it; labels keep their type (int or text)."""
    out = {}
    for kind, columns in kinds.items():
        for col in columns:
            if col not in frame.columns:
                raise LineageError(f"reference split lacks column {col!r} listed by the ingest run")
            out[col] = coerce_column(frame[col], kind, "reference", col, 1.0)
    y = frame[target]
    if task is not Task.regression and not pd.api.types.is_numeric_dtype(y):
        y = y.astype(object).where(y.notna(), None)
    out[target] = y
    return pd.DataFrame(out)
