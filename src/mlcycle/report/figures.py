"""Pictures and numbers for the report that the tracking store does not hold ready-made.

Pure: no mlflow, no hydra. Figures are drawn on ``matplotlib.figure.Figure`` objects (no
pyplot, so no global state and no backend to choose) and embedded as PNG data URIs, so the
report never fetches anything.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"


@dataclass(frozen=True)
class Trial:
    """One tuning trial as read back from its run."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL (optuna's names)
    value: float | None
    params: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_data_uri(fig, dpi: int = 100) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def optimization_history(trials: Sequence[Trial], metric: str, greater: bool) -> str | None:
    """Score per trial and the best so far (``core.tuning.history_figure``, the drawing the
    tune stage logs), as a PNG data URI; None without a scored trial."""
    from mlcycle.core.tuning import history_figure

    scored = sorted((t for t in trials if t.value is not None and math.isfinite(t.value)), key=lambda t: t.number)
    if not scored:
        return None
    fig = history_figure([t.number for t in scored], [t.value for t in scored], [t.state == COMPLETE for t in scored],
                         metric, greater)
    return figure_data_uri(fig)


def _typed(values: list[str]) -> tuple[str, list[Any]]:
    """('numeric', floats) when every value parses as a number, else ('categorical', strings)."""
    try:
        return "numeric", [float(v) for v in values]
    except (TypeError, ValueError):
        return "categorical", [str(v) for v in values]


def estimate_importances(trials: Sequence[Trial], greater: bool, seed: int = 0, min_trials: int = 5) -> dict[str, float]:
    """fANOVA importances of the trial parameters, over the ranges the trials actually tried.

    For runs whose tune stage did not log importances itself. Empty with fewer than
    ``min_trials`` complete trials or no parameter that varied.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    complete = [t for t in trials if t.state == COMPLETE and t.value is not None and math.isfinite(t.value)]
    if len(complete) < min_trials:
        return {}
    names = sorted(set.intersection(*(set(t.params) for t in complete)))
    distributions: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for name in names:
        kind, values = _typed([t.params[name] for t in complete])
        if len(set(values)) < 2:
            continue
        if kind == "numeric":
            distributions[name] = FloatDistribution(min(values), max(values))
        else:
            distributions[name] = CategoricalDistribution(sorted(set(values)))
        columns[name] = values
    if not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if greater else "minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={n: columns[n][i] for n in distributions}, distributions=distributions, value=t.value
            )
            for i, t in enumerate(complete)
        ]
    )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in importances.items()}
