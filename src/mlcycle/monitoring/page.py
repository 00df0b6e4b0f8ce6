"""The monitoring page: the ``report.html`` of a monitoring run. What ``monitor.examine``
found, and what the verdict triggered, drawn by ``report.monitoring`` with the run report's
templates (one look for both).

The page is written when the monitoring run is logged, before any retrain starts (so a
retrain that never ends still leaves a page saying it began), and written again once the
retrain has ended, naming the run it made (run id and its path in the MLflow UI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from mlcycle.config.monitor import MonitorConfig
from mlcycle.core import drift
from mlcycle.errors import first_line
from mlcycle.monitoring.retrain import TRIGGERED_BY_TAG, RetrainOutcome

if TYPE_CHECKING:
    from mlcycle.monitoring.monitor import Findings

NOT_TRIGGERED, SKIPPED, RUNNING, FINISHED, FAILED = "not triggered", "skipped", "running", "finished", "failed"


@dataclass(frozen=True)
class Action:
    """What the verdict triggered, as the page tells it."""

    state: str  # NOT_TRIGGERED | SKIPPED | RUNNING | FINISHED | FAILED
    text: str
    run_id: str | None = None  # the retrain's root run
    facts: dict[str, str] = field(default_factory=dict)


def planned(m: MonitorConfig, found: Findings, skipped: str) -> Action:
    """Before any retrain: not triggered, skipped (``skipped`` says why), or about to run."""
    if skipped:
        return Action(SKIPPED, skipped)
    if not drift.at_least(found.verdict, m.retrain_on.value):
        return Action(NOT_TRIGGERED, f"no retrain: verdict {found.verdict}, monitor.retrain_on={m.retrain_on.value}")
    return Action(RUNNING, f"a retrain started as this page was written: a new pipeline run tagged {TRIGGERED_BY_TAG}")


def finished(outcome: RetrainOutcome, model_name: str) -> Action:
    if outcome.promoted:
        moved = f"v{outcome.version} is the champion now (was v{outcome.champion_before})"
    else:
        moved = f"the champion stays v{outcome.champion_after}"
    return Action(FINISHED, f"retrained on {outcome.data_rows} rows: {model_name} v{outcome.version}; {moved}",
                  outcome.run_id, {"registered version": outcome.version or "–",
                                   "champion before": outcome.champion_before or "–",
                                   "champion after": outcome.champion_after or "–"})


def failed(error: BaseException, run_id: str | None) -> Action:
    return Action(FAILED, f"the retrain failed: {type(error).__name__}: {first_line(error)}", run_id)


def tolerance(metric: str, m: MonitorConfig) -> str:
    """The decay rule for ``metric`` in words, e.g. "> 0.05 or > 10 %"."""
    rules = []
    if m.max_metric_drop is not None and metric not in drift.SCALE_DEPENDENT:
        rules.append(f"> {m.max_metric_drop:g}")
    if m.max_relative_drop is not None:
        rules.append(f"> {m.max_relative_drop:.0%}")
    return " or ".join(rules) if rules else "never"


def plots(found: Findings) -> dict[str, str]:
    """Reference vs batch, per feature and for the model's output (PNG data URIs). Drawn once
    for both writes of the page."""
    from mlcycle.report import monitoring as report

    ref, batch = found.reference, found.batch
    fitted, kinds = ref.fitted_rows, ref.kinds
    out = {r.feature: report.distribution_plot(r.feature, kinds[r.feature], fitted[r.feature], batch[r.feature])
           for r in found.features}
    ref_scores, batch_scores, score_kind = found.scores
    out["prediction"] = report.distribution_plot(
        "prediction (model output)", score_kind, pd.Series(ref_scores), pd.Series(batch_scores)
    )
    return out


def html(m: MonitorConfig, found: Findings, run_id: str, experiment_id: str, drawn: dict[str, str], action: Action) -> str:
    from mlcycle.report import monitoring as report

    model, ref = found.model, found.reference
    drifted = sum(r.drifted for r in found.features)
    summary = [
        ("model", f"{model.name} version {model.version}" + (f" (@{model.alias})" if model.alias else "")),
        ("reference", f"root run {ref.root_run_id}, {len(ref.fitted_rows)} rows ({ref.data_source})"),
        ("batch", f"{found.batch_source}, {found.batch_rows} rows, {found.labelled_rows} labelled"),
        ("drifted features", f"{drifted} of {len(found.features)} ({found.drifted_share:.0%}; threshold {m.max_drifted_share:.0%})"),
    ]
    if (decay := found.decay) is not None:
        summary.append((decay.metric, f"registered {decay.baseline:.4f}, batch {decay.current:.4f}: {decay.change()} "
                                      f"(decay at {tolerance(decay.metric, m)})"))
    if found.note:
        summary.append(("note", found.note))
    return report.render(
        title=f"Monitoring {model.name} v{model.version}", run_id=run_id, experiment_id=experiment_id,
        summary=summary, verdict=found.verdict, action=action, features=found.features, prediction=found.prediction,
        decay=found.decay, metrics={k: (model.registered_metric(k), v) for k, v in found.batch_metrics.items()},
        plots=drawn,
    )
