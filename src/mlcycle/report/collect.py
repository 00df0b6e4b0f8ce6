"""Read one pipeline run's story back from the tracking store, one small function per section.

Everything comes from what the runs logged (params, metrics, tags, artifacts, the registry),
through ``MlflowClient`` and a root run id, so a report can be rebuilt at any time. Each
section function takes the ``RunTree`` and returns a plain dict for the template; a section
exists only when its stage ran, and shows what that stage managed to log (a stage that
failed half-way still gets its section, with the error).

To add a section: write ``def my_section(tree) -> dict``, add a ``Section`` to ``SECTIONS``,
and a block of the same name to ``templates/report.html.j2``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

import mlcycle
from mlcycle.errors import MlcycleError
from mlcycle.report import figures
from mlcycle.tracking import ERROR_TAG, KIND_TAG, PARENT_TAG, STAGE_TAG

CACHE_TAG_PREFIX = "mlcycle.cache"  # cache-hit tags on a stage run (step caching)
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_TRIAL_STATES = {"FINISHED": figures.COMPLETE, "KILLED": figures.PRUNED, "FAILED": figures.FAIL}
_GATE_KEY = re.compile(r"gate|champion|threshold|promot|decision|compar|baseline", re.I)
_DECISION_KEY = re.compile(r"decision|passed|promoted", re.I)
_PROGRESS_BAR_VAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class ReportError(MlcycleError):
    """The run to report on cannot be found or is not part of a pipeline run."""


# --------------------------------------------------------------------------- the run tree
def _children(client: MlflowClient, run: Run) -> list[Run]:
    """Direct children of ``run``, oldest first, across result pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'",
            max_results=1000, page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_name or ""))


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
    def cache(self) -> dict[str, str]:
        return {k: v for k, v in self.run.data.tags.items() if k.startswith(CACHE_TAG_PREFIX)}

    @property
    def seconds(self) -> float | None:
        if "duration_seconds" in self.run.data.metrics:
            return self.run.data.metrics["duration_seconds"]
        info = self.run.info
        return (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None

    def info(self) -> dict[str, Any]:
        """The strip every stage section starts with."""
        return {
            "name": self.name, "run_id": self.run.info.run_id, "status": self.run.info.status,
            "error": self.run.data.tags.get(ERROR_TAG), "seconds": self.seconds, "cache": self.cache,
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
            if found := _children(self.client, run):
                return found
        return []


def _cache_source(client: MlflowClient, run: Run) -> Run | None:
    """The run a cache hit reused: a run id held by one of the stage run's cache tags."""
    for key, value in sorted(run.data.tags.items()):
        if key.startswith(CACHE_TAG_PREFIX) and _RUN_ID.fullmatch(value or "") and value != run.info.run_id:
            try:
                return client.get_run(value)
            except MlflowException:
                return None
    return None


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
        for child in _children(client, root):
            name = child.data.tags.get(STAGE_TAG)
            if name:
                stages[name] = StageView(client, child, _cache_source(client, child))
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
    seen = set()
    current = run_id
    while current not in seen:
        seen.add(current)
        try:
            run = client.get_run(current)
        except MlflowException as exc:
            raise ReportError(f"run {current!r} not found in {client.tracking_uri}") from exc
        tags = run.data.tags
        if tags.get(KIND_TAG) == "pipeline" or PARENT_TAG not in tags:
            if tags.get(KIND_TAG) not in ("pipeline", None):
                raise ReportError(f"run {run_id!r} is not part of a pipeline run (kind {tags[KIND_TAG]!r})")
            return current
        current = tags[PARENT_TAG]
    raise ReportError(f"run {run_id!r}: cycle in {PARENT_TAG} tags")


# --------------------------------------------------------------------------- helpers
def _prefixed(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in sorted(values.items()) if k.startswith(prefix)}


def _metric_table(values: dict[str, float], keys: list[str] | None = None) -> list[dict[str, Any]]:
    keys = [k for k in (sorted(values) if keys is None else keys) if k in values]
    return [{"name": k, "value": values[k]} for k in keys]


def _literal(text: str | None, default: Any) -> Any:
    """A list/dict param logged as JSON or as a Python repr, parsed back."""
    if text is None:
        return default
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return default


def _configured_metric(tree: RunTree) -> str | None:
    """The primary metric from the config and the task (for a tune stage that failed before
    logging its own ``metric`` param)."""
    from mlcycle.config import Task
    from mlcycle.evaluation import primary_metric

    configured = tree.root.data.params.get("evaluate.primary_metric")
    task = tree.stages["ingest"].params.get("task") if "ingest" in tree.stages else None
    try:
        return primary_metric(configured, Task(task)) if configured and task else None
    except ValueError:
        return None


def _greater_is_better(metric: str) -> bool:
    from mlcycle.evaluation import greater_is_better

    return greater_is_better(metric)


# --------------------------------------------------------------------------- sections
def summary(tree: RunTree) -> dict[str, Any]:
    root, tags, params = tree.root, tree.root_tags, tree.root.data.params
    planned = _literal(params.get("stages"), [])
    failed = tree.failed_stage()
    return {
        "run_name": root.info.run_name,
        "run_id": root.info.run_id,
        "experiment_id": root.info.experiment_id,
        "status": root.info.status,
        "start_time": root.info.start_time,
        "end_time": root.info.end_time,
        "seconds": (root.info.end_time - root.info.start_time) / 1000 if root.info.end_time else None,
        "data_name": tags.get("mlcycle.data_name"),
        "model_name": params.get("model.name"),
        "error": tags.get(ERROR_TAG),
        "failed_stage": failed.name if failed else None,
        "stages_run": list(tree.stages),
        "stages_not_run": [s for s in planned if s not in tree.stages],
        "headline": _metric_table(
            tree.root_metrics, sorted(k for k in tree.root_metrics if k.startswith(("cv_", "test_")))
        ),
        "registered": (
            f"{tags['mlcycle.registered_model']} v{tags['mlcycle.registered_version']}"
            if tags.get("mlcycle.registered_version") else None
        ),
        "report_error": tags.get("mlcycle.report_error"),
    }


def data_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["ingest"]
    p, m = stage.params, stage.metrics
    profile = stage.artifact_json("data_profile.json") or {}
    splits = profile.get("splits", {})
    split_names = list(splits) or [s for s in ("train", "validation", "test") if f"rows_{s}" in m]
    columns = [
        {"name": col, "kind": kind, "missing": [splits[s].get("missing_rate", {}).get(col) for s in split_names]}
        for col, kind in profile.get("columns", {}).items()
    ]
    classes = sorted({c for s in splits.values() for c in s.get("class_balance", {})})
    balance = [{"label": c, "shares": [splits[s].get("class_balance", {}).get(c) for s in split_names]} for c in classes]
    target_stats = [
        {"stat": k, "per_split": [splits[s].get("target", {}).get(k) for s in split_names]}
        for k in next((list(s["target"]) for s in splits.values() if "target" in s), [])
    ]
    return {
        "stage": stage.info(),
        "source": p.get("source") or tree.root_tags.get("mlcycle.data_source"),
        "digest": stage.tags.get("mlcycle.data_digest") or tree.root_tags.get("mlcycle.data_digest"),
        "target": p.get("target") or profile.get("target"),
        "task": p.get("task") or profile.get("task"),
        "split": p.get("split"),
        "split_kind": p.get("split_kind"),
        "counts": _metric_table(m, ["rows_in", "rows_missing_target", "rows_out", "columns_in", "n_features"]),
        "split_names": split_names,
        "split_rows": [m.get(f"rows_{s}", splits.get(s, {}).get("rows")) for s in split_names],
        "columns": sorted(columns, key=lambda c: -max((x or 0) for x in c["missing"]) if c["missing"] else 0),
        "class_balance": balance,
        "target_stats": target_stats,
        "dropped_columns": _literal(p.get("dropped_columns"), []),
    }


def preprocessing_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["preprocess"]
    m = stage.metrics
    keys = ["rows_in", "duplicates_removed_train", "duplicates_removed_validation", "anomalies_removed",
            "rows_out", "imputed_cells", "clipped_values"]
    return {
        "stage": stage.info(),
        "counts": _metric_table(m, keys + sorted(k for k in m if k not in keys and k != "duration_seconds")),
        "settings": dict(sorted(stage.params.items())),
    }


def features_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["features"]
    info = stage.artifact_json("features.json") or {}
    kinds = info.get("input_kinds", {})
    return {
        "stage": stage.info(),
        "counts": _metric_table(stage.metrics, ["features_in", "features_derived", "features_out", "preprocess_fit_seconds"]),
        "kind_counts": dict(Counter(kinds.values()).most_common()),
        "inputs": sorted(kinds.items()),
        "outputs": info.get("output_features", []),
        "settings": {k: v for k, v in sorted(stage.params.items())},
    }


def _trial(run: Run, metric: str | None) -> figures.Trial:
    tags, m = run.data.tags, run.data.metrics
    value = m.get(f"cv_{metric}") if metric else None
    if value is None:
        value = next((v for k, v in m.items() if k.startswith("cv_")), None)
    number = tags.get("mlcycle.trial_number") or (run.info.run_name or "").rpartition("-")[2]
    return figures.Trial(
        number=int(number) if str(number).isdigit() else -1,
        state=tags.get("mlcycle.trial_state") or _TRIAL_STATES.get(run.info.status, run.info.status),
        value=value,
        params=dict(run.data.params),
        error=tags.get(ERROR_TAG),
    )


def _logged_importances(stage: StageView) -> dict[str, float]:
    """Parameter importances the tune stage logged itself: metrics ``importance.<param>`` /
    ``importance_<param>``, or a JSON artifact ``param_importances.json`` / ``importances.json``."""
    for prefix in ("importance.", "importance_", "param_importance."):
        if found := _prefixed(stage.metrics, prefix):
            return dict(sorted(found.items(), key=lambda kv: -kv[1]))
    for path in ("param_importances.json", "importances.json", "plots/param_importances.json"):
        data = stage.artifact_json(path)
        if isinstance(data, dict) and data:
            return dict(sorted(((str(k), float(v)) for k, v in data.items()), key=lambda kv: -kv[1]))
    return {}


def tuning_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["tune"]
    p, m = stage.params, stage.metrics
    metric = p.get("metric") or next((k[3:] for k in tree.root_metrics if k.startswith("cv_")), None) or _configured_metric(tree)
    greater = _greater_is_better(metric) if metric else True
    trials = sorted((_trial(r, metric) for r in stage.children), key=lambda t: t.number)
    counted = Counter(t.state for t in trials)
    counts = {
        state: int(m[f"trials_{key}"]) if f"trials_{key}" in m else counted.get(state, 0)
        for state, key in ((figures.COMPLETE, "complete"), (figures.PRUNED, "pruned"), (figures.FAIL, "failed"))
    }
    scored = [t for t in trials if t.state == figures.COMPLETE and t.value is not None]
    ranked = sorted(scored, key=lambda t: t.value, reverse=greater)
    best_params = _prefixed(p, "best.") or (dict(ranked[0].params) if ranked else {})
    best_value = m.get(f"best_cv_{metric}", ranked[0].value if ranked else None)

    logged_plots = stage.pngs()
    history_logged = {k: v for k, v in logged_plots.items() if "history" in k.lower()}
    history = next(iter(history_logged.values()), None) or figures.optimization_history(trials, metric or "score", greater)
    importances, estimated = _logged_importances(stage), False
    if not importances and not any("importance" in k.lower() for k in logged_plots):
        importances, estimated = figures.estimate_importances(trials, greater), True
    errors = Counter(t.error for t in trials if t.state == figures.FAIL and t.error)
    return {
        "stage": stage.info(),
        "metric": metric,
        "direction": "higher is better" if greater else "lower is better",
        "settings": {k: p[k] for k in ("sampler", "n_trials", "cv_folds", "estimator", "pruner", "n_jobs", "storage") if k in p},
        "counts": counts,
        "n_trial_runs": len(trials),
        "best_params": best_params,
        "best_value": best_value,
        "best_value_key": f"best_cv_{metric}",
        "validation": _metric_table(m, [f"val_{metric}"]),
        "timing": _metric_table(m, ["folds_prepare_seconds", "study_seconds"]),
        "history": history,
        "history_drawn": not history_logged,
        "plots": {k: v for k, v in logged_plots.items() if k not in history_logged},
        "importances": list(importances.items())[:10],
        "importances_estimated": estimated,
        "top_trials": ranked[:10],
        "param_names": sorted({k for t in ranked[:10] for k in t.params}),
        "errors": errors.most_common(5),
        "summary_metrics": _metric_table(
            m, sorted(k for k in m if k.startswith(("trials_", "n_trials")) and k not in
                      ("trials_complete", "trials_pruned", "trials_failed"))
        ),
    }


def training_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["train"]
    p = dict(stage.params)
    steps = _literal(p.pop("pipeline_steps", None), [])
    estimator = p.pop("estimator", None)
    return {
        "stage": stage.info(),
        "estimator": estimator,
        "steps": steps,
        "params": dict(sorted(p.items())),
        "counts": _metric_table(stage.metrics, ["rows_fit", "fit_seconds"]),
    }


def evaluation_section(tree: RunTree) -> dict[str, Any]:
    from mlcycle.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS

    stage = tree.stages["evaluate"]
    m = stage.metrics
    order = [f"test_{k}" for k in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)]
    keys = [k for k in order if k in m] + sorted(k for k in m if k.startswith("test_") and k not in order)
    return {
        "stage": stage.info(),
        "metrics": _metric_table(m, keys),
        "cv": _metric_table(tree.root_metrics, sorted(k for k in tree.root_metrics if k.startswith("cv_"))),
        "rows_test": m.get("rows_test"),
        "plots": stage.pngs("plots") or stage.pngs(),
    }


def registry_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["register"]
    p, m, tags = stage.params, stage.metrics, stage.tags
    name = p.get("registered_model") or tree.root_tags.get("mlcycle.registered_model")
    version = p.get("version") or tree.root_tags.get("mlcycle.registered_version")
    skip_tags = {STAGE_TAG, KIND_TAG, ERROR_TAG, "mlcycle.aliases", "mlcycle.model_uri"}
    logged = {
        **{k: v for k, v in p.items() if k not in ("registered_model", "version")},
        **{k: v for k, v in m.items() if k != "duration_seconds"},
        **{k: v for k, v in tags.items() if k.startswith("mlcycle.") and k not in skip_tags and not k.startswith(CACHE_TAG_PREFIX)},
    }
    out: dict[str, Any] = {
        "stage": stage.info(),
        "model_name": name,
        "version": version,
        "aliases": [a for a in (tags.get("mlcycle.aliases") or "").split(",") if a],
        "model_uri": tags.get("mlcycle.model_uri"),
        "gate": {k: v for k, v in sorted(logged.items()) if _GATE_KEY.search(k)},
        "other": {k: v for k, v in sorted(logged.items()) if not _GATE_KEY.search(k)},
        "decision": None,
        "version_tags": {},
        "version_gate": {},
        "current_aliases": {},
        "registry_problem": None,
    }
    if name and version:
        try:
            mv = tree.client.get_model_version(name, version)
            vtags = dict(sorted(mv.tags.items()))
            out["version_gate"] = {k: v for k, v in vtags.items() if _GATE_KEY.search(k)}
            out["version_tags"] = {k: v for k, v in vtags.items() if not _GATE_KEY.search(k)}
            out["current_aliases"] = dict(sorted(tree.client.get_registered_model(name).aliases.items()))
        except MlflowException as exc:
            out["registry_problem"] = f"{name} v{version} is no longer in the registry ({exc.error_code})"
    decision = {**out["version_gate"], **out["gate"]}
    out["decision"] = next(((k, v) for k, v in decision.items() if _DECISION_KEY.search(k)), None)
    return out


def lineage_section(tree: RunTree) -> dict[str, Any]:
    tags = tree.root_tags
    keys = ["git_commit", "git_dirty", "mlcycle_version", "config_fingerprint", "data_name", "data_source", "data_digest"]
    config = StageView(tree.client, tree.root).artifact_text("config.yaml")
    experiment = tree.root.info.experiment_id
    return {
        "facts": [(k, tags[f"mlcycle.{k}"]) for k in keys if f"mlcycle.{k}" in tags],
        "root_run_id": tree.root.info.run_id,
        "experiment_id": experiment,
        "runs": [
            {**s.info(), "ui_path": f"#/experiments/{experiment}/runs/{s.run.info.run_id}"} for s in tree.stages.values()
        ],
        "config": config,
    }


def timings_section(tree: RunTree) -> dict[str, Any]:
    rows = [{"name": s.name, "seconds": s.seconds, "status": s.run.info.status} for s in tree.stages.values()]
    longest = max((r["seconds"] or 0 for r in rows), default=0) or 1
    for row in rows:
        row["share"] = (row["seconds"] or 0) / longest
    info = tree.root.info
    total = (info.end_time - info.start_time) / 1000 if info.end_time else None
    staged = sum(r["seconds"] or 0 for r in rows)
    return {"rows": rows, "total": total, "outside_stages": total - staged if total is not None else None}


@dataclass(frozen=True)
class Section:
    name: str  # the template block of the same name renders it
    title: str
    collect: Callable[[RunTree], dict[str, Any]]
    stage: str | None = None  # shown only when this stage ran


SECTIONS: tuple[Section, ...] = (
    Section("data", "Data", data_section, "ingest"),
    Section("preprocessing", "Preprocessing", preprocessing_section, "preprocess"),
    Section("features", "Features", features_section, "features"),
    Section("tuning", "Tuning", tuning_section, "tune"),
    Section("training", "Training", training_section, "train"),
    Section("evaluation", "Evaluation", evaluation_section, "evaluate"),
    Section("registry", "Registry", registry_section, "register"),
    Section("lineage", "Lineage", lineage_section),
    Section("timings", "Timings", timings_section),
)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per artifact download; a report downloads a dozen."""
    previous = os.environ.get(_PROGRESS_BAR_VAR)
    os.environ[_PROGRESS_BAR_VAR] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR_VAR, None)
        else:
            os.environ[_PROGRESS_BAR_VAR] = previous


def collect(client: MlflowClient, root_run_id: str) -> dict[str, Any]:
    """Everything the template needs for the pipeline run ``root_run_id``.

    A section whose collection fails shows the problem instead of sinking the whole report.
    """
    with _no_progress_bars():
        return _collect(client, root_run_id)


def _collect(client: MlflowClient, root_run_id: str) -> dict[str, Any]:
    tree = RunTree.load(client, root_run_id)
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        if section.stage and section.stage not in tree.stages:
            continue
        try:
            sections[section.name] = section.collect(tree)
        except Exception as exc:
            stage = tree.stages.get(section.stage) if section.stage else None
            sections[section.name] = {
                "problem": f"{type(exc).__name__}: {exc}", "stage": stage.info() if stage else None
            }
    return {
        "summary": summary(tree),
        "sections": sections,
        "toc": [(s.name, s.title) for s in SECTIONS if s.name in sections],
        "generated_at": int(time.time() * 1000),
        "mlcycle_version": mlcycle.__version__,
    }


def build(client: MlflowClient, root_run_id: str) -> str:
    """The report page (HTML) for a pipeline run."""
    from mlcycle.report.render import render_html

    return render_html(collect(client, root_run_id))
