"""A pipeline run read back from the tracking store: the root run and its stage runs.

``RunTree`` holds them; ``StageView`` is one stage's run merged with the run a cache hit
reused (its own values win), with its artifacts, plots and child runs (the trials).
Everything the report shows comes from here, so ``mlcycle report`` rebuilds it any time.
"""

from __future__ import annotations

import ast
import json
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from mlcycle.errors import MlcycleError
from mlcycle.report import figures
from mlcycle.tracking.cache import CACHE_TAG, HIT, REASON_TAG
from mlcycle.tracking.runs import (
    ERROR_TAG,
    KIND_PIPELINE,
    KIND_TAG,
    STAGE_TAG,
    children,
    outputs_run,
    root_of,
    seconds_of,
)


class ReportError(MlcycleError):
    """The run to report on cannot be found or is not part of a pipeline run."""


@dataclass
class StageView:
    """A stage's run, merged with the run it reused on a cache hit (its own values win)."""

    client: MlflowClient
    run: Run
    source: Run | None = None  # the earlier run whose outputs a cache hit reused

    @property
    def runs(self) -> list[Run]:
        return [self.run] + ([self.source] if self.source else [])

    @property
    def name(self) -> str:
        return self.run.data.tags.get(STAGE_TAG, self.run.info.run_name)

    @property
    def params(self) -> dict[str, str]:
        return {**(self.source.data.params if self.source else {}), **self.run.data.params}

    @property
    def metrics(self) -> dict[str, float]:
        own = {k: v for k, v in self.run.data.metrics.items()}
        return {**(self.source.data.metrics if self.source else {}), **own}

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.run.data.tags)

    @property
    def cache(self) -> str | None:
        """The step cache's decision for this run: hit | miss | forced | off (None: not recorded)."""
        return self.run.data.tags.get(CACHE_TAG)

    @property
    def cache_hit(self) -> bool:
        """Only a hit is a hit: the stage did not run, its outputs came from another run."""
        return self.cache == HIT

    @property
    def seconds(self) -> float | None:
        if (seconds := seconds_of(self.run.data.metrics)) is not None:
            return seconds
        info = self.run.info
        return (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None

    def info(self) -> dict[str, Any]:
        """The strip every stage section starts with."""
        return {
            "name": self.name, "run_id": self.run.info.run_id, "status": self.run.info.status,
            "error": self.run.data.tags.get(ERROR_TAG), "seconds": self.seconds,
            "cache": self.cache, "cache_hit": self.cache_hit, "cache_reason": self.run.data.tags.get(REASON_TAG),
            "source_run_id": self.source.info.run_id if self.source else None,
        }

    def _download(self, path: str) -> bytes | None:
        for run in self.runs:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{run.info.artifact_uri.rstrip('/')}/{path}", dst_path=tmp,
                        tracking_uri=self.client.tracking_uri,
                    )
                except (MlflowException, OSError):
                    continue
                if Path(local).is_file():
                    return Path(local).read_bytes()
        return None

    def artifact_json(self, path: str) -> Any:
        data = self._download(path)
        return None if data is None else json.loads(data)

    def artifact_text(self, path: str) -> str | None:
        data = self._download(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def pngs(self, folder: str = "", depth: int = 2) -> dict[str, str]:
        """PNG artifacts under ``folder`` (path -> data URI), from the first run that has any."""
        for run in self.runs:
            paths = self._png_paths(run.info.run_id, folder or None, depth)
            if paths:
                return {p: figures.png_data_uri(d) for p in paths if (d := self._download(p)) is not None}
        return {}

    def _png_paths(self, run_id: str, folder: str | None, depth: int) -> list[str]:
        try:
            entries = self.client.list_artifacts(run_id, folder)
        except (MlflowException, OSError):
            return []
        out = []
        for entry in entries:
            if entry.is_dir and depth > 1:
                out += self._png_paths(run_id, entry.path, depth - 1)
            elif entry.path.lower().endswith(".png"):
                out.append(entry.path)
        return sorted(out)

    @cached_property
    def children(self) -> list[Run]:
        for run in self.runs:
            if found := children(self.client, run.info.experiment_id, run.info.run_id):
                return found
        return []


@dataclass
class RunTree:
    """A pipeline's root run and its stage runs, by stage name in the order they ran."""

    client: MlflowClient
    root: Run
    stages: dict[str, StageView] = field(default_factory=dict)

    @classmethod
    def load(cls, client: MlflowClient, root_run_id: str) -> RunTree:
        root = client.get_run(root_run_id)
        stages: dict[str, StageView] = {}
        for child in children(client, root.info.experiment_id, root.info.run_id):
            if name := child.data.tags.get(STAGE_TAG):
                source = outputs_run(client, child)
                stages[name] = StageView(client, child, source if source is not child else None)
        return cls(client, root, stages)

    @property
    def root_metrics(self) -> dict[str, float]:
        return self.root.data.metrics

    @property
    def root_tags(self) -> dict[str, str]:
        return self.root.data.tags

    def failed_stage(self) -> StageView | None:
        return next((s for s in self.stages.values() if s.run.info.status in ("FAILED", "KILLED")), None)


def resolve_root(client: MlflowClient, run_id: str) -> str:
    """The pipeline (root) run id for ``run_id``, which may also be a stage or trial run."""
    try:
        root = root_of(client, run_id)
    except MlflowException as exc:
        raise ReportError(f"run {run_id!r} not found in {client.tracking_uri}") from exc
    kind = root.data.tags.get(KIND_TAG)
    if kind not in (KIND_PIPELINE, None):
        raise ReportError(f"run {run_id!r} is not part of a pipeline run (kind {kind!r})")
    return root.info.run_id


# --------------------------------------------------------------------------- helpers
def prefixed(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in sorted(values.items()) if k.startswith(prefix)}


def metric_table(values: dict[str, float], keys: list[str] | None = None) -> list[dict[str, Any]]:
    keys = [k for k in (sorted(values) if keys is None else keys) if k in values]
    return [{"name": k, "value": values[k]} for k in keys]


def literal(text: str | None, default: Any) -> Any:
    """A list/dict param logged as JSON or as a Python repr, parsed back."""
    if text is None:
        return default
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return default


def configured_metric(tree: RunTree) -> str | None:
    """The primary metric from the config and the task (for a tune stage that failed before
    logging its own ``metric`` param)."""
    from mlcycle.config.schema import Task
    from mlcycle.core.evaluation import primary_metric

    configured = tree.root.data.params.get("evaluate.primary_metric")
    task = tree.stages["ingest"].params.get("task") if "ingest" in tree.stages else None
    try:
        return primary_metric(configured, Task(task)) if configured and task else None
    except ValueError:
        return None


def greater_is_better(metric: str) -> bool:
    from mlcycle.core.evaluation import greater_is_better

    return greater_is_better(metric)


