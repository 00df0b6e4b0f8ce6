"""drift.py against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlcycle.core import drift
from mlcycle.core.data import CATEGORICAL, DATETIME, NUMERIC
from mlcycle.errors import DataError


def psi_numeric(reference, current, n_bins: int = 10) -> float:
    """A numeric feature's PSI, as the monitor computes it."""
    thresholds = drift.DriftThresholds(n_bins=n_bins)
    return drift.feature_drift("x", NUMERIC, pd.Series(reference, dtype=float), pd.Series(current, dtype=float), thresholds).psi


def psi_categorical(reference: pd.Series, current: pd.Series) -> float:
    return drift.feature_drift("x", CATEGORICAL, reference, current, drift.DriftThresholds()).psi


def psi_by_hand(p, q):
    return sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))


# --------------------------------------------------------------------------- PSI, numeric
def test_numeric_psi_with_two_quantile_bins():
    # reference [1,2,3,4], 2 bins: the median 2.5 is the one edge -> 2 | 2 rows, 0 missing
    # batch [1,1,1,4] -> 3 | 1 rows
    assert drift.quantile_edges(np.array([1.0, 2, 3, 4]), 2).tolist() == [2.5]
    got = psi_numeric([1, 2, 3, 4], [1, 1, 1, 4], n_bins=2)
    # the empty missing bin is epsilon in both: contributes 0
    assert got == pytest.approx(psi_by_hand([0.5, 0.5], [0.75, 0.25]), abs=1e-12)
    assert got == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2), abs=1e-12)  # 0.274653


def test_numeric_psi_identical_samples_is_zero():
    values = np.arange(100.0)
    assert psi_numeric(values, values.copy()) == 0.0


def test_value_on_an_edge_falls_in_the_lower_bin():
    edges = np.array([2.5, 4.0])
    assert drift.numeric_counts([1, 2.5, 3, 4, 5, np.nan], edges).tolist() == [2, 2, 1, 1]


def test_ties_merge_bins_and_missing_values_get_their_own_bin():
    # zero-inflated: 6 zeros and 1,2,3,4 -> deciles 0 (x5), 0.4 ... duplicates removed
    ref = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], dtype=float)
    edges = drift.quantile_edges(ref, 10)
    assert edges[0] == 0.0 and len(edges) == len(set(edges.tolist()))
    counts = drift.numeric_counts(ref, edges)
    assert counts[0] == 6  # all zeros in (-inf, 0]
    assert counts[-1] == 0 and counts.sum() == 10
    # a batch with 50 % missing: bins 0.6/0.4 vs 0.3/0.2 plus 0.5 missing (reference: epsilon)
    cur = np.array([0, 0, 0, 4, 4, np.nan, np.nan, np.nan, np.nan, np.nan])
    ref_c = drift.numeric_counts(ref, np.array([0.0]))
    cur_c = drift.numeric_counts(cur, np.array([0.0]))
    assert ref_c.tolist() == [6, 4, 0] and cur_c.tolist() == [3, 2, 5]
    expected = psi_by_hand([0.6, 0.4, drift.EPSILON], [0.3, 0.2, 0.5])
    assert drift.psi_from_counts(ref_c, cur_c) == pytest.approx(expected, abs=1e-12)


def test_constant_reference_column():
    # one edge at the constant: "at it" and "above it"
    assert drift.quantile_edges(np.full(5, 3.0), 10).tolist() == [3.0]
    assert psi_numeric(np.full(5, 3.0), np.full(4, 3.0)) == 0.0
    # half the batch above the constant: bins (1, 0) vs (0.5, 0.5), empty bin = epsilon
    got = psi_numeric(np.full(4, 3.0), [3.0, 3.0, 7.0, 9.0])
    assert got == pytest.approx(psi_by_hand([1.0, drift.EPSILON], [0.5, 0.5]), abs=1e-12)


# --------------------------------------------------------------------------- PSI, categorical
def test_categorical_psi_buckets_unseen_categories_and_missing():
    ref = pd.Series(["a", "a", "b", "b"])
    cur = pd.Series(["a", "c", None, "b"])  # c: never seen; one missing
    buckets = drift.category_buckets(ref, 50)
    assert sorted(buckets) == ["a", "b"]
    assert drift.categorical_counts(cur, ["a", "b"], drift.UNSEEN).tolist() == [1, 1, 1, 1]
    expected = psi_by_hand([0.5, 0.5, drift.EPSILON, drift.EPSILON], [0.25, 0.25, 0.25, 0.25])
    assert psi_categorical(ref, cur) == pytest.approx(expected, abs=1e-12)


def test_categorical_psi_is_zero_for_same_shares_and_text_type_does_not_matter():
    ref = pd.Series(["x", "y", "y", None], dtype=object)
    cur = pd.Series(["y", "x", None, "y"], dtype="str")  # what a Parquet round trip gives
    assert psi_categorical(ref, cur) == 0.0


# --------------------------------------------------------------------------- tests
def test_ks_statistic_and_exact_p_value_by_hand():
    # completely separated samples of 4 and 4: D = 1; of the C(8,4) = 70 equally likely
    # arrangements only 2 give D = 1 -> p = 2/70
    stat, p = drift.ks_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert stat == 1.0
    assert p == pytest.approx(2 / 70, abs=1e-12)
    # ECDFs of [1,2,3,4] and [1,1,1,4] differ most at 1: 0.25 vs 0.75
    assert drift.ks_test([1, 2, 3, 4], [1, 1, 1, 4])[0] == pytest.approx(0.5)


def test_ks_ignores_missing_values():
    assert drift.ks_test([1, 2, np.nan, 3, 4], [5, 6, 7, np.nan, 8])[0] == 1.0


def test_chi_squared_by_hand():
    # reference a:50 b:50, batch a:80 b:20; expected 65/35 in each row
    stat, p = drift.chi2_test([50, 50], [80, 20])
    by_hand = 2 * ((50 - 65) ** 2 / 65 + (50 - 35) ** 2 / 35)  # 19.78
    assert stat == pytest.approx(by_hand, rel=1e-12)
    assert p == pytest.approx(math.erfc(math.sqrt(by_hand / 2)), rel=1e-9)  # chi2 sf, 1 dof


def test_chi_squared_drops_empty_buckets_and_handles_a_single_bucket():
    assert drift.chi2_test([50, 50, 0], [80, 20, 0])[0] == pytest.approx(19.78021978, rel=1e-8)
    assert drift.chi2_test([10, 0], [7, 0]) == (0.0, 1.0)


# --------------------------------------------------------------------------- per feature
def test_feature_is_drifted_only_when_psi_is_large_and_the_test_significant():
    th = drift.DriftThresholds(psi=0.2, alpha=0.01)
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 2000))
    same = drift.feature_drift("x", NUMERIC, ref, pd.Series(rng.normal(0, 1, 2000)), th)
    moved = drift.feature_drift("x", NUMERIC, ref, pd.Series(rng.normal(1, 1, 2000)), th)
    assert not same.drifted and same.psi < 0.05
    assert moved.drifted and moved.psi > 0.5 and moved.p_value < 1e-10
    # a big PSI on 5 rows is noise: not drifted
    tiny = drift.feature_drift("x", NUMERIC, ref, pd.Series([-0.1, 0.0, 0.05, 0.1, 0.2]), th)
    assert tiny.psi >= 0.2 and tiny.p_value > th.alpha and not tiny.drifted


def test_datetime_features_compare_on_a_time_axis():
    ref = pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", None, "2025-03-01"]))
    out = drift.as_numbers(ref, DATETIME)
    assert np.isnan(out[2]) and out[1] - out[0] == 31 * 86400
    later = pd.Series(ref + pd.Timedelta(days=365))
    result = drift.feature_drift("d", DATETIME, ref, later, drift.DriftThresholds())
    assert result.test == "ks" and result.statistic == 1.0


def test_drifted_share():
    th = drift.DriftThresholds()
    ref = pd.DataFrame({"a": np.arange(500.0), "b": ["x", "y"] * 250, "c": np.arange(500.0)})
    cur = pd.DataFrame({"a": np.arange(500.0) + 1000, "b": ["x", "y"] * 250, "c": np.arange(500.0)})
    results = drift.data_drift(ref, cur, {"a": "numeric", "b": "categorical", "c": "numeric"}, th)
    assert [r.drifted for r in results] == [True, False, False]
    assert drift.drifted_share(results) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- verdict
def decay(decayed: bool) -> drift.Decay:
    return drift.Decay("roc_auc", 0.75, 0.6 if decayed else 0.74, 0.15 if decayed else 0.01, 0.2, decayed)


def pred(psi: float, p: float) -> drift.FeatureDrift:
    return drift.FeatureDrift("prediction", "numeric", psi, "ks", 0.1, p, False, 0.0, 0.0)


@pytest.mark.parametrize(
    ("share", "prediction", "perf", "expected"),
    [
        (0.0, pred(0.01, 0.5), None, "ok"),
        (0.0, pred(0.01, 0.5), decay(False), "ok"),
        (0.5, pred(0.01, 0.5), None, "drift"),  # unlabelled: drift at most
        (0.0, pred(0.5, 1e-9), None, "drift"),  # the scores moved
        (0.0, pred(0.5, 0.2), None, "ok"),  # ... but not significantly
        (0.5, pred(0.5, 1e-9), decay(False), "drift"),  # drifted, performance holds
        (0.0, pred(0.01, 0.5), decay(True), "decay"),
    ],
)
def test_verdict(share, prediction, perf, expected):
    assert drift.verdict(share, prediction, perf, max_drifted_share=0.25, max_prediction_psi=0.2, alpha=0.01) == expected


def test_performance_decay_respects_the_metric_direction():
    auc = drift.performance_decay("roc_auc", 0.75, 0.69, greater_is_better=True, max_drop=0.05)
    assert auc.worsening == pytest.approx(0.06) and auc.decayed
    assert not drift.performance_decay("roc_auc", 0.75, 0.80, True, 0.05).decayed
    rmse = drift.performance_decay("rmse", 10.0, 11.5, greater_is_better=False, max_drop=5.0, max_relative_drop=0.1)
    assert rmse.worsening == pytest.approx(1.5) and rmse.relative == pytest.approx(0.15) and rmse.decayed
    # rmse is in the target's units: the absolute tolerance does not apply to it
    small = drift.performance_decay("rmse", 50.0, 50.3, greater_is_better=False, max_drop=0.05, max_relative_drop=0.1)
    assert small.worsening > 0.05 and not small.decayed
    assert not drift.performance_decay("roc_auc", 0.75, 0.6, True, max_drop=None, max_relative_drop=None).decayed


def test_at_least():
    assert drift.at_least("decay", "decay") and drift.at_least("decay", "drift")
    assert not drift.at_least("drift", "decay") and not drift.at_least("ok", "drift")
    assert not drift.at_least("decay", "never")


# --------------------------------------------------------------------------- the batch
KINDS = {"price": "numeric", "device": "categorical"}


def test_align_batch_types_columns_like_the_reference_and_ignores_extra_ones():
    raw = pd.DataFrame({"id": ["a", "b"], "price": ["1.5", "2"], "device": ["mobile", None], "y": [0, 1]})
    features, labels = drift.align_batch(raw, KINDS, "y", "batch.csv")
    assert list(features.columns) == ["price", "device"]
    assert features["price"].tolist() == [1.5, 2.0]
    assert features["device"].tolist() == ["mobile", None]
    assert labels.tolist() == [0, 1]
    assert drift.align_batch(raw.drop(columns="y"), KINDS, "y", "batch.csv")[1] is None


def test_align_batch_missing_feature_column_is_a_clear_error():
    raw = pd.DataFrame({"device": ["mobile"], "y": [1]})
    with pytest.raises(DataError, match=r"batch.csv: batch lacks feature column\(s\) \['price'\]"):
        drift.align_batch(raw, KINDS, "y", "batch.csv")


def test_align_labels_maps_to_the_model_classes():
    y = drift.align_labels(pd.Series([1.0, None, 0.0]), "binary", (0, 1), "b", "y")
    assert y.tolist() == [1, None, 0] and isinstance(y[0], int)
    with pytest.raises(DataError, match=r"label\(s\) \['2'\] the model never saw"):
        drift.align_labels(pd.Series([0, 2]), "binary", (0, 1), "b", "y")
    assert drift.align_labels(pd.Series(["b", "a"]), "multiclass", ("a", "b", "c"), "b", "y").tolist() == ["b", "a"]


def test_the_change_is_said_in_the_metric_direction():
    """A batch that scores better says "better", never "worse by -0.0299"."""
    better_auc = drift.performance_decay("roc_auc", 0.7475, 0.7774, True, 0.05)
    assert better_auc.change() == "better by 0.0299 (+4.0%)"
    assert drift.performance_decay("roc_auc", 0.7730, 0.3873, True, 0.05).change() == "worse by 0.3857 (-49.9%)"
    # lower is better: a smaller rmse is better, a larger one worse
    assert drift.performance_decay("rmse", 10.0, 9.0, False, None, 0.1).change() == "better by 1.0000 (+10.0%)"
    assert drift.performance_decay("rmse", 10.0, 11.5, False, None, 0.1).change() == "worse by 1.5000 (-15.0%)"
    assert drift.performance_decay("r2", 0.5, 0.5, True, 0.05).change() == "unchanged"
    assert drift.performance_decay("mae", 0.0, 2.0, False, None, 0.1).change() == "worse by 2.0000"  # no baseline to divide by
