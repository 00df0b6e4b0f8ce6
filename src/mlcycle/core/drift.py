"""Data and prediction drift between a reference sample and a new batch. Pure: no mlflow, no hydra.

Per feature, two complementary measures:

* **PSI** (population stability index), a size of the shift:
  ``sum((cur - ref) * ln(cur / ref))`` over bins. Numeric bins are cut at the reference's
  quantiles (ties collapse into one bin, so a constant or zero-inflated column still works);
  categorical bins are the reference's categories, plus one bucket for categories the
  reference never saw. Missing values are a bin of their own in both cases. An empty bin
  counts as ``EPSILON`` so the logarithm stays finite. Rule of thumb: < 0.1 stable,
  0.1-0.25 moderate, > 0.25 major shift.
* **A two-sample test**, whether the shift is more than sampling noise: Kolmogorov-Smirnov
  for numeric values (missing values left out: the PSI's missing bin sees them),
  chi-squared on the bucket counts for categoricals.

A feature counts as drifted when both agree: PSI at or above its threshold (big enough to
matter) and p-value below alpha (not noise). PSI alone flags noise on small batches; a test
alone flags negligible shifts on large ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlcycle.core.cleaning import MISSING_CATEGORY, as_text, finite
from mlcycle.core.data import CATEGORICAL, DATETIME, coerce_column
from mlcycle.errors import DataError

EPSILON = 1e-4  # proportion used for an empty bin
MISSING = MISSING_CATEGORY  # how a missing category is shown
UNSEEN = "__unseen__"  # categories of the batch the reference never saw
OTHER = "__other__"  # reference categories beyond max_categories

OK, DRIFT, DECAY = "ok", "drift", "decay"
LEVELS = (OK, DRIFT, DECAY)  # in increasing severity


# --------------------------------------------------------------------------- binning
def quantile_edges(reference: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles; duplicates (ties) removed.

    Bins are ``(-inf, e0], (e0, e1], ..., (ek, inf)``. A constant column gives one edge,
    so two bins: at the constant, and above it. No values give no edges (one bin).
    """
    values = np.asarray(reference, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0 or n_bins < 2:
        return np.array([], dtype=float)
    qs = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(qs)


def numeric_counts(values, edges: np.ndarray) -> np.ndarray:
    """Counts per bin for ``edges`` (see quantile_edges), then one count for missing values."""
    x = np.asarray(values, dtype=float)
    missing = np.isnan(x)
    idx = np.searchsorted(edges, x[~missing], side="left")  # value == edge goes left: (a, b]
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return np.append(counts, missing.sum())


def category_buckets(reference: pd.Series, max_categories: int) -> list[str]:
    """The reference's most frequent categories (at most ``max_categories``), as text."""
    counts = as_text(reference).dropna().value_counts()
    return [str(c) for c in counts.index[:max_categories]]


def categorical_counts(values: pd.Series, buckets: list[str], overflow: str) -> np.ndarray:
    """Counts per bucket, then ``overflow`` (values outside ``buckets``), then missing."""
    text = as_text(values)
    missing = int(text.isna().sum())
    present = text.dropna()
    known = present.value_counts()
    counts = [int(known.get(b, 0)) for b in buckets]
    outside = int(len(present) - sum(counts))
    return np.array([*counts, outside, missing])


# --------------------------------------------------------------------------- measures
def psi_from_counts(ref_counts, cur_counts, epsilon: float = EPSILON) -> float:
    """PSI of two count vectors over the same bins; empty bins count as ``epsilon``."""
    ref = np.asarray(ref_counts, dtype=float)
    cur = np.asarray(cur_counts, dtype=float)
    if ref.sum() == 0 or cur.sum() == 0:
        return float("nan")
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_test(reference, current) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and p-value on the non-missing values."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def chi2_test(ref_counts, cur_counts) -> tuple[float, float]:
    """Chi-squared test of homogeneity on aligned bucket counts (no continuity correction).

    Buckets empty in both samples are dropped; with fewer than two buckets left the
    distributions are identical (statistic 0, p-value 1).
    """
    table = np.vstack([np.asarray(ref_counts, dtype=float), np.asarray(cur_counts, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


# --------------------------------------------------------------------------- per feature
@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2  # a feature's PSI at or above this is a material shift ...
    alpha: float = 0.01  # ... and its test's p-value below this says it is not noise
    n_bins: int = 10
    max_categories: int = 50
    epsilon: float = EPSILON


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical | datetime
    psi: float
    test: str  # ks | chi2
    statistic: float
    p_value: float
    drifted: bool
    missing_reference: float  # share of missing values
    missing_current: float

    def as_dict(self) -> dict:
        return asdict(self)


def as_numbers(values: pd.Series, kind: str) -> np.ndarray:
    """Values on a numeric axis: datetimes as seconds since the epoch, missing (and ±inf) as NaN."""
    if kind == DATETIME:
        stamps = pd.to_datetime(values, errors="coerce")
        out = stamps.astype("datetime64[ns]").astype("int64").to_numpy(dtype=float) / 1e9
        out[stamps.isna().to_numpy()] = np.nan
        return out
    return finite(pd.to_numeric(values, errors="coerce").astype(float)).to_numpy(dtype=float)


def feature_drift(
    name: str, kind: str, reference: pd.Series, current: pd.Series, thresholds: DriftThresholds
) -> FeatureDrift:
    """PSI and the two-sample test for one feature."""
    if kind == CATEGORICAL:
        buckets = category_buckets(reference, thresholds.max_categories)
        ref_counts = categorical_counts(reference, buckets, OTHER)
        cur_counts = categorical_counts(current, buckets, UNSEEN)
        psi = psi_from_counts(ref_counts, cur_counts, thresholds.epsilon)
        statistic, p_value = chi2_test(ref_counts, cur_counts)
        test = "chi2"
    else:
        ref, cur = as_numbers(reference, kind), as_numbers(current, kind)
        edges = quantile_edges(ref, thresholds.n_bins)
        psi = psi_from_counts(numeric_counts(ref, edges), numeric_counts(cur, edges), thresholds.epsilon)
        statistic, p_value = ks_test(ref, cur)
        test = "ks"
    drifted = bool(psi >= thresholds.psi and p_value < thresholds.alpha)
    return FeatureDrift(
        feature=name,
        kind=kind,
        psi=psi,
        test=test,
        statistic=statistic,
        p_value=p_value,
        drifted=drifted,
        missing_reference=float(reference.isna().mean()) if len(reference) else 0.0,
        missing_current=float(current.isna().mean()) if len(current) else 0.0,
    )


def data_drift(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[str, str], thresholds: DriftThresholds
) -> list[FeatureDrift]:
    """``feature_drift`` for every column in ``kinds`` (name -> kind), in that order."""
    return [feature_drift(col, kind, reference[col], current[col], thresholds) for col, kind in kinds.items()]


def drifted_share(results: Iterable[FeatureDrift]) -> float:
    results = list(results)
    return sum(r.drifted for r in results) / len(results) if results else 0.0


# --------------------------------------------------------------------------- predictions
def prediction_drift(reference, current, kind: str, thresholds: DriftThresholds) -> FeatureDrift:
    """Drift of the model's output: scores (numeric) or predicted labels (categorical)."""
    return feature_drift("prediction", kind, pd.Series(reference), pd.Series(current), thresholds)


# --------------------------------------------------------------------------- performance
@dataclass(frozen=True)
class Decay:
    metric: str
    baseline: float  # what the model was registered with (its test split)
    current: float  # on the labelled batch
    worsening: float  # > 0 when worse, in the metric's own units
    relative: float  # worsening / |baseline|
    decayed: bool

    def change(self) -> str:
        """The batch against the baseline in words, in the metric's direction: "worse by
        0.3857 (-49.9%)", "better by 0.0299 (+4.0%)" or "unchanged"."""
        if self.worsening == 0:
            return "unchanged"
        word, sign = ("worse", "-") if self.worsening > 0 else ("better", "+")
        share = f" ({sign}{abs(self.relative):.1%})" if math.isfinite(self.relative) else ""
        return f"{word} by {abs(self.worsening):.4f}{share}"


# Metrics in the units of the target (or unbounded): an absolute tolerance means nothing
# across datasets, so only the relative one applies to them.
SCALE_DEPENDENT = frozenset({"rmse", "mae", "log_loss"})


def performance_decay(
    metric: str,
    baseline: float,
    current: float,
    greater_is_better: bool,
    max_drop: float | None,
    max_relative_drop: float | None = None,
) -> Decay:
    """Has ``metric`` worsened by more than ``max_drop`` (absolute; ignored for
    SCALE_DEPENDENT metrics) or ``max_relative_drop`` (a fraction of the baseline)? Either
    condition suffices; ``None`` switches one off."""
    worsening = (baseline - current) if greater_is_better else (current - baseline)
    relative = worsening / abs(baseline) if baseline else float("inf") if worsening > 0 else 0.0
    absolute_applies = max_drop is not None and metric not in SCALE_DEPENDENT
    decayed = (absolute_applies and worsening > max_drop) or (max_relative_drop is not None and relative > max_relative_drop)
    return Decay(metric, float(baseline), float(current), float(worsening), float(relative), bool(decayed))


def verdict(
    share: float,
    prediction: FeatureDrift | None,
    decay: Decay | None,
    *,
    max_drifted_share: float,
    max_prediction_psi: float,
    alpha: float,
) -> str:
    """``decay`` when labelled performance worsened past its tolerance; otherwise ``drift``
    when too many features drifted or the model's output distribution moved (PSI at or
    above ``max_prediction_psi`` and p < ``alpha``); else ``ok``."""
    if decay is not None and decay.decayed:
        return DECAY
    if share >= max_drifted_share:
        return DRIFT
    if prediction is not None and prediction.psi >= max_prediction_psi and prediction.p_value < alpha:
        return DRIFT
    return OK


def at_least(level: str, threshold: str) -> bool:
    """Is verdict ``level`` at or above ``threshold`` (``never`` is above everything)?"""
    if threshold == "never":
        return False
    return LEVELS.index(level) >= LEVELS.index(threshold)


# --------------------------------------------------------------------------- the batch
def align_batch(
    frame: pd.DataFrame, kinds: Mapping[str, str], target: str, source: str, tolerance: float = 0.01
) -> tuple[pd.DataFrame, pd.Series | None]:
    """The batch's feature columns typed like the reference's (``kinds``: name -> kind),
    and its labels when the target column is there with at least one value.

    A feature column the model needs but the batch lacks is a ``DataError`` naming it.
    Extra columns (identifiers, ...) are ignored.
    """

    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: batch lacks feature column(s) {missing} that the model needs; "
            f"expected: {', '.join(kinds)}"
        )
    features = pd.DataFrame(
        {col: coerce_column(frame[col], kind, source, col, tolerance) for col, kind in kinds.items()},
        index=frame.index,
    )
    labels = frame[target] if target in frame.columns and frame[target].notna().any() else None
    return features.reset_index(drop=True), None if labels is None else labels.reset_index(drop=True)


def align_labels(labels: pd.Series, task: str, classes: tuple, source: str, target: str) -> pd.Series:
    """Batch labels in the reference's terms: the model's class labels (same type), or
    floats for regression. Missing labels stay missing; a label the model never saw is a
    ``DataError``."""

    present = labels.notna()
    if task == "regression":
        y = pd.to_numeric(labels, errors="coerce")
        if (y.isna() & present).any():
            bad = labels[y.isna() & present].iloc[0]
            raise DataError(f"{source}: regression target {target!r} has non-numeric value {bad!r}")
        return y.astype(float)
    values = labels[present]
    integral = pd.api.types.is_numeric_dtype(values) and np.all(np.mod(values.to_numpy(dtype=float), 1) == 0)
    if pd.api.types.is_bool_dtype(values) or integral:
        values = values.astype(int)
    text = values.astype(str)
    lookup = {str(c): c for c in classes}
    unknown = sorted(set(text) - set(lookup))
    if unknown:
        raise DataError(
            f"{source}: target {target!r} has label(s) {unknown[:5]} the model never saw; "
            f"its classes are {list(lookup)}"
        )
    out = pd.Series([None] * len(labels), index=labels.index, dtype=object)
    out[present] = text.map(lookup).to_numpy(dtype=object)
    return out
