"""The monitoring report: one self-contained HTML page (plots inlined as base64 PNG).

Pure: no mlflow, no hydra. The MLflow UI shows an ``.html`` artifact in place, so the page
needs no server, no script and no file beside it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np
import pandas as pd

from mlcycle.core.data import CATEGORICAL, DATETIME
from mlcycle.core.drift import MISSING, UNSEEN, Decay, FeatureDrift, as_numbers

REFERENCE_COLOR, BATCH_COLOR = "#4C72B0", "#DD8452"
MAX_BARS = 15


def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=72)
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def distribution_plot(name: str, kind: str, reference: pd.Series, current: pd.Series) -> str:
    """Reference vs batch distribution of one column, as base64 PNG: share of rows per bin
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
    summary: Sequence[tuple[str, str]],
    verdict: str,
    features: Sequence[FeatureDrift],
    prediction: FeatureDrift | None,
    decay: Decay | None,
    metrics: Mapping[str, tuple[float | None, float | None]],
    plots: Mapping[str, str],
) -> str:
    """The HTML page. ``summary``: (label, value) rows; ``metrics``: name -> (registered,
    batch); ``plots``: column name (or ``prediction``) -> base64 PNG."""
    rows = [*features, *([prediction] if prediction is not None else [])]
    feature_rows = "\n".join(
        "<tr{cls}><td>{f}</td><td>{k}</td><td>{psi}</td><td>{t}</td><td>{s}</td><td>{p}</td>"
        "<td>{mr}</td><td>{mc}</td><td>{d}</td></tr>".format(
            cls=' class="drifted"' if r.drifted else "",
            f=escape(r.feature), k=r.kind, psi=_num(r.psi), t=r.test, s=_num(r.statistic),
            p=_pvalue(r.p_value), mr=f"{r.missing_reference:.1%}", mc=f"{r.missing_current:.1%}",
            d="yes" if r.drifted else "",
        )
        for r in rows
    )
    metric_rows = "\n".join(
        f"<tr{' class=drifted' if decay and name == decay.metric and decay.decayed else ''}>"
        f"<td>{escape(name)}</td><td>{_num(reg)}</td><td>{_num(cur)}</td></tr>"
        for name, (reg, cur) in metrics.items()
    )
    summary_rows = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in summary)
    figures = "\n".join(
        f'<figure><img alt="{escape(name)}" src="data:image/png;base64,{png}"></figure>' for name, png in plots.items()
    )
    performance = (
        f"<h2>Performance on the labelled batch</h2><table><tr><th>metric</th><th>registered (test split)</th>"
        f"<th>batch</th></tr>{metric_rows}</table>"
        if metrics
        else "<h2>Performance</h2><p>The batch has no labels: drift only.</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.drifted td {{ background: #fde2e1; }}
.verdict {{ display: inline-block; padding: 0.2em 0.8em; border-radius: 4px; font-weight: bold; }}
.ok {{ background: #d4edda; }} .drift {{ background: #fff3cd; }} .decay {{ background: #f8d7da; }}
figure {{ display: inline-block; margin: 0.3em; }}
</style></head><body>
<h1>{escape(title)}</h1>
<p>Verdict: <span class="verdict {escape(verdict)}">{escape(verdict.upper())}</span></p>
<table>{summary_rows}</table>
{performance}
<h2>Drift per feature</h2>
<p>PSI over reference-quantile bins (numeric) or reference categories (categorical), missing
values as their own bin; KS or chi-squared test. Drifted: PSI at or above the threshold and
p-value below alpha.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>test</th><th>statistic</th><th>p-value</th>
<th>missing (ref)</th><th>missing (batch)</th><th>drifted</th></tr>
{feature_rows}</table>
<h2>Distributions: reference vs batch</h2>
{figures}
<p style="font-size:0.8em;color:#666">Unseen categories are bucketed as {escape(UNSEEN)}; missing values as {escape(MISSING)}.</p>
</body></html>
"""


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _pvalue(value: float) -> str:
    if value is None or np.isnan(value):
        return "-"
    return "<1e-300" if value == 0 else f"{value:.3g}"
