"""The monitoring report: one self-contained HTML page (plots inlined as PNG data URIs),
drawn with the run report's Jinja environment and base template (``render.py``).

Pure: no mlflow, no hydra. The MLflow UI shows an ``.html`` artifact in place, so the page
needs no server, no script and no file beside it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.core.data import CATEGORICAL, DATETIME
from mlcycle.core.drift import MISSING, UNSEEN, Decay, FeatureDrift, as_numbers
from mlcycle.report.figures import png_data_uri

REFERENCE_COLOR, BATCH_COLOR = "#4C72B0", "#DD8452"
MAX_BARS = 15


def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=72)
    finally:
        plt.close(fig)
    return png_data_uri(buffer.getvalue())


def distribution_plot(name: str, kind: str, reference: pd.Series, current: pd.Series) -> str:
    """Reference vs batch distribution of one column, as a PNG data URI: share of rows per bin
    (numeric, common bins over the central 99 % of both) or per category (top levels)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 2.8))  # fixed margins: a layout engine costs 3x the drawing
    if kind == CATEGORICAL:
        ref = _category_shares(reference)
        cur = _category_shares(current)
        levels = list(ref.sort_values(ascending=False).index[:MAX_BARS])
        levels += [c for c in cur.sort_values(ascending=False).index if c not in levels][: max(0, MAX_BARS - len(levels))]
        x = np.arange(len(levels))
        ax.bar(x - 0.2, [ref.get(c, 0.0) for c in levels], width=0.4, color=REFERENCE_COLOR, label="reference")
        ax.bar(x + 0.2, [cur.get(c, 0.0) for c in levels], width=0.4, color=BATCH_COLOR, label="batch")
        ax.set_xticks(x, [str(c)[:14] for c in levels], rotation=45, ha="right", fontsize=7)
    else:
        ref, cur = as_numbers(reference, kind), as_numbers(current, kind)
        ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        both = np.concatenate([ref, cur])
        if both.size:
            lo, hi = np.quantile(both, [0.005, 0.995])
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 31)
            for values, color, label in ((ref, REFERENCE_COLOR, "reference"), (cur, BATCH_COLOR, "batch")):
                if values.size:
                    counts, _ = np.histogram(np.clip(values, lo, hi), bins=bins)
                    ax.stairs(counts / values.size, bins, fill=True, alpha=0.55, color=color, label=label)
        ax.tick_params(labelsize=7)
        if kind == DATETIME:  # the axis is seconds since the epoch: label it with dates
            from matplotlib.ticker import FuncFormatter, MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: pd.Timestamp(v, unit="s").strftime("%Y-%m-%d")))
    fig.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.32 if kind == CATEGORICAL else 0.12)
    ax.set_ylabel("share of rows", fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _figure_png(fig)


def _category_shares(values: pd.Series) -> pd.Series:
    text = values.astype(object).where(values.notna(), MISSING).astype(str)
    return text.value_counts(normalize=True)


def render(
    *,
    title: str,
    run_id: str,
    experiment_id: str,
    summary: Sequence[tuple[str, str]],
    verdict: str,
    action: Any,
    features: Sequence[FeatureDrift],
    prediction: FeatureDrift | None,
    decay: Decay | None,
    metrics: Mapping[str, tuple[float | None, float | None]],
    plots: Mapping[str, str],
) -> str:
    """The HTML page (``templates/monitoring.html.j2``, the run report's environment and
    base). ``summary``: (label, value) rows; ``action``: what the verdict triggered
    (``monitoring.page.Action``); ``metrics``: name -> (registered, batch); ``plots``: column
    name (or ``prediction``) -> PNG data URI."""
    import time

    import mlcycle
    from mlcycle.report.render import render_page
    from mlcycle.tracking.ui import run_path

    rows = [*features, *([prediction] if prediction is not None else [])]
    return render_page("monitoring.html.j2", {
        "title": title, "run_id": run_id, "experiment_id": experiment_id, "ui_path": run_path(experiment_id, run_id),
        "summary": list(summary), "verdict": verdict,
        "action": action, "action_ui_path": run_path(experiment_id, action.run_id) if action.run_id else None,
        "features": [
            {"name": r.feature, "kind": r.kind, "psi": r.psi, "test": r.test, "statistic": r.statistic,
             "p_value": _pvalue(r.p_value), "missing_reference": r.missing_reference,
             "missing_current": r.missing_current, "drifted": r.drifted}
            for r in rows
        ],
        "metrics": [
            {"name": name, "registered": reg, "batch": cur, "decayed": bool(decay and name == decay.metric and decay.decayed)}
            for name, (reg, cur) in metrics.items()
        ],
        "plots": dict(plots),
        "unseen": UNSEEN, "missing": MISSING,
        "generated_at": int(time.time() * 1000), "mlcycle_version": mlcycle.__version__,
    })


def _pvalue(value: float) -> str:
    if value is None or np.isnan(value):
        return "–"
    return "<1e-300" if value == 0 else f"{value:.3g}"
