"""Read one pipeline run's story back from the tracking store, one small function per section.

Everything comes from what the runs logged (params, metrics, tags, artifacts, the registry),
through ``MlflowClient`` and a root run id (``tree.RunTree``), so a report can be rebuilt at
any time. Each section function takes the ``RunTree`` and returns a plain dict for the
template; a section exists only when its stage ran, and shows what that stage managed to
log (a stage that failed half-way still gets its section, with the error).

To add a section: write ``def my_section(tree) -> dict``, add a ``Section`` to ``SECTIONS``,
and a block of the same name to ``templates/report.html.j2``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run

import mlcycle
from mlcycle.core.modeling import ENSEMBLE
from mlcycle.report import REPORT_ERROR_TAG, figures
from mlcycle.report.registry import registry_section
from mlcycle.report.tree import (
    RunTree,
    StageView,
    configured_metric,
    greater_is_better,
    literal,
    metric_table,
    prefixed,
)
from mlcycle.tracking import ui
from mlcycle.tracking.lineage import DATA_DIGEST_TAG, DATA_NAME_TAG, DATA_SOURCE_TAG
from mlcycle.tracking.registry import REGISTERED_MODEL_TAG, REGISTERED_VERSION_TAG
from mlcycle.tracking.runs import ERROR_TAG, TIME_METRICS
from mlcycle.tracking.study import (
    ENSEMBLE_CV,
    FAMILY_BEST,
    FAMILY_TRIALS,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
)

_TRIAL_STATES = {"FINISHED": figures.COMPLETE, "KILLED": figures.PRUNED, "FAILED": figures.FAIL}


def summary(tree: RunTree) -> dict[str, Any]:
    root, tags, params = tree.root, tree.root_tags, tree.root.data.params
    planned = literal(params.get("stages"), [])
    failed = tree.failed_stage()
    return {
        "run_name": root.info.run_name,
        "run_id": root.info.run_id,
        "ui_url": ui.url(tree.client.tracking_uri, ui.run_path(root.info.experiment_id, root.info.run_id)),
        "experiment_id": root.info.experiment_id,
        "status": root.info.status,
        "start_time": root.info.start_time,
        "end_time": root.info.end_time,
        "seconds": (root.info.end_time - root.info.start_time) / 1000 if root.info.end_time else None,
        "data_name": tags.get(DATA_NAME_TAG),
        "model_name": params.get("model.name"),
        "error": tags.get(ERROR_TAG),
        "failed_stage": failed.name if failed else None,
        "stages_run": list(tree.stages),
        "stages_not_run": [s for s in planned if s not in tree.stages],
        "headline": metric_table(
            tree.root_metrics, sorted(k for k in tree.root_metrics if k.startswith(("cv_", "test_")))
        ),
        "registered": (
            f"{tags[REGISTERED_MODEL_TAG]} v{tags[REGISTERED_VERSION_TAG]}"
            if tags.get(REGISTERED_VERSION_TAG) else None
        ),
        "report_error": tags.get(REPORT_ERROR_TAG),
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
        "source": p.get("source") or tree.root_tags.get(DATA_SOURCE_TAG),
        "digest": stage.tags.get(DATA_DIGEST_TAG) or tree.root_tags.get(DATA_DIGEST_TAG),
        "target": p.get("target") or profile.get("target"),
        "task": p.get("task") or profile.get("task"),
        "split": p.get("split"),
        "split_kind": p.get("split_kind"),
        "counts": metric_table(m, ["rows_in", "rows_missing_target", "rows_out", "columns_in", "n_features"]),
        "split_names": split_names,
        "split_rows": [m.get(f"rows_{s}", splits.get(s, {}).get("rows")) for s in split_names],
        "columns": sorted(columns, key=lambda c: -max((x or 0) for x in c["missing"]) if c["missing"] else 0),
        "class_balance": balance,
        "target_stats": target_stats,
        "dropped_columns": literal(p.get("dropped_columns"), []),
    }


def preprocessing_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["preprocess"]
    m = stage.metrics
    keys = ["rows_in", "duplicates_removed_train", "duplicates_removed_validation", "anomalies_removed",
            "rows_out", "imputed_cells", "infinite_values", "clipped_values"]
    return {
        "stage": stage.info(),
        "counts": metric_table(m, keys + sorted(k for k in m if k not in keys and k not in TIME_METRICS)),
        "settings": dict(sorted(stage.params.items())),
    }


def features_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["features"]
    info = stage.artifact_json("features.json") or {}
    kinds = info.get("input_kinds", {})
    return {
        "stage": stage.info(),
        "counts": metric_table(stage.metrics, ["features_in", "features_derived", "features_out", "preprocess_fit_seconds"]),
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
    number = tags.get(TRIAL_NUMBER_TAG) or (run.info.run_name or "").rpartition("-")[2]
    return figures.Trial(
        number=int(number) if str(number).isdigit() else -1,
        state=tags.get(TRIAL_STATE_TAG) or _TRIAL_STATES.get(run.info.status, run.info.status),
        value=value,
        params=dict(run.data.params),
        error=tags.get(ERROR_TAG),
    )


def _logged_importances(stage: StageView) -> dict[str, float]:
    """Parameter importances the tune stage logged itself: metrics ``importance.<param>`` /
    ``importance_<param>``, or a JSON artifact ``param_importances.json`` / ``importances.json``."""
    for prefix in ("importance.", "importance_", "param_importance."):
        if found := prefixed(stage.metrics, prefix):
            return dict(sorted(found.items(), key=lambda kv: -kv[1]))
    for path in ("param_importances.json", "importances.json", "plots/param_importances.json"):
        data = stage.artifact_json(path)
        if isinstance(data, dict) and data:
            return dict(sorted(((str(k), float(v)) for k, v in data.items()), key=lambda kv: -kv[1]))
    return {}


def tuning_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["tune"]
    p, m = stage.params, stage.metrics
    metric = p.get("metric") or next((k[3:] for k in tree.root_metrics if k.startswith("cv_")), None) or configured_metric(tree)
    greater = greater_is_better(metric) if metric else True
    trials = sorted((_trial(r, metric) for r in stage.children), key=lambda t: t.number)
    counted = Counter(t.state for t in trials)
    counts = {
        state: int(m[f"trials_{key}"]) if f"trials_{key}" in m else counted.get(state, 0)
        for state, key in ((figures.COMPLETE, "complete"), (figures.PRUNED, "pruned"), (figures.FAIL, "failed"))
    }
    scored = [t for t in trials if t.state == figures.COMPLETE and t.value is not None]
    ranked = sorted(scored, key=lambda t: t.value, reverse=greater)
    best_params = prefixed(p, "best.") or (dict(ranked[0].params) if ranked else {})
    best_value = m.get(f"best_cv_{metric}", ranked[0].value if ranked else None)

    logged_plots = stage.pngs()
    history_logged = {k: v for k, v in logged_plots.items() if "history" in k.lower()}
    history = next(iter(history_logged.values()), None) or figures.optimization_history(trials, metric or "score", greater)
    importances, estimated = _logged_importances(stage), False
    if not importances:
        importances, estimated = figures.estimate_importances(trials, greater), True
    # the importances table (with its bars) says what a logged importance plot says, readably
    shown = {k: v for k, v in logged_plots.items() if k not in history_logged and not (importances and "importance" in k.lower())}
    errors = Counter(t.error for t in trials if t.state == figures.FAIL and t.error)
    return {
        "stage": stage.info(),
        "metric": metric,
        "direction": "higher is better" if greater else "lower is better",
        "settings": {k: p[k] for k in ("sampler", "n_trials", "cv_folds", "estimator", "families", "pruner", "n_jobs",
                                       "storage") if k in p},
        "families": _families(p, m, greater),
        "counts": counts,
        "n_trial_runs": len(trials),
        "best_params": best_params,
        "best_value": best_value,
        "best_value_key": f"best_cv_{metric}",
        "validation": metric_table(m, [f"val_{metric}"]),
        "timing": metric_table(m, ["folds_prepare_seconds", "study_seconds"]),
        "history": history,
        "history_drawn": not history_logged,
        "plots": shown,
        "importances": list(importances.items())[:10],
        "importances_estimated": estimated,
        "top_trials": ranked[:10],
        "param_names": sorted({k for t in ranked[:10] for k in t.params}),
        "errors": errors.most_common(5),
        "summary_metrics": metric_table(
            m, sorted(k for k in m if k.startswith(("trials_", "n_trials")) and k not in
                      ("trials_complete", "trials_pruned", "trials_failed"))
        ),
    }


def _families(params: dict[str, str], metrics: dict[str, float], greater: bool) -> list[dict[str, Any]]:
    """model=auto: one row per family searched (best CV score, finished trials), best first;
    the ensemble selection's row (its CV score, its members and weights) when it ran."""
    names = literal(params.get("families"), [])
    rows = [{"family": n, "best": metrics.get(f"{FAMILY_BEST}{n}"), "trials": metrics.get(f"{FAMILY_TRIALS}{n}"),
             "key": f"{FAMILY_BEST}{n}", "chosen": n == params.get("best_family")} for n in names]
    if "ensemble_members" in params:
        key = next((k for k in metrics if k.startswith(ENSEMBLE_CV)), "")
        rows.append({"family": ENSEMBLE, "best": metrics.get(key), "trials": None, "key": key,
                     "chosen": params.get("best_family") == ENSEMBLE,
                     "members": params["ensemble_members"].replace(":", " × ").replace(",", ", ")})
    scored = sorted((r for r in rows if r["best"] is not None), key=lambda r: r["best"], reverse=greater)
    return scored + [r for r in rows if r["best"] is None]


def training_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["train"]
    p = dict(stage.params)
    steps = literal(p.pop("pipeline_steps", None), [])
    estimator = p.pop("estimator", None)
    family = p.pop("family", None)
    objective = p.pop("threshold_objective", None)
    m = stage.metrics
    return {
        "stage": stage.info(),
        "estimator": estimator,
        "family": family,
        "steps": steps,
        "params": dict(sorted(p.items())),
        "counts": metric_table(m, ["rows_fit", "fit_seconds"]),
        "threshold": m.get("threshold"),
        "threshold_objective": objective,
        "threshold_metrics": metric_table(m, sorted(k for k in m if k.endswith("_at_threshold"))),
    }


def evaluation_section(tree: RunTree) -> dict[str, Any]:
    from mlcycle.core.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS

    stage = tree.stages["evaluate"]
    m = stage.metrics
    order = [f"test_{k}" for k in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)]
    at_default = [f"test_{k}_at_0.5" for k in ("precision", "recall", "f1")]
    keys = [k for k in order if k in m] + sorted(k for k in m if k.startswith("test_") and k not in order + at_default)
    threshold = m.get("threshold")
    return {
        "stage": stage.info(),
        "metrics": metric_table(m, keys),
        # label metrics at the Pipeline's decision threshold and at the estimator's default rule
        "threshold": threshold,
        "threshold_table": [
            {"metric": k, "at_threshold": m.get(f"test_{k}"), "at_default": m.get(f"test_{k}_at_0.5")}
            for k in ("precision", "recall", "f1")
        ] if threshold is not None else [],
        "cv": metric_table(tree.root_metrics, sorted(k for k in tree.root_metrics if k.startswith("cv_"))),
        "rows_test": m.get("rows_test"),
        "plots": stage.pngs("plots") or stage.pngs(),
    }


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
            {**s.info(), "ui_url": ui.url(tree.client.tracking_uri, ui.run_path(experiment, s.run.info.run_id))}
            for s in tree.stages.values()
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


def collect(client: MlflowClient, root_run_id: str) -> dict[str, Any]:
    """Everything the template needs for the pipeline run ``root_run_id``.

    A section whose collection fails shows the problem instead of sinking the whole report.
    """
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
