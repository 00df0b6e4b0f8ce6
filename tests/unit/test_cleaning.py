from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcycle.core.cleaning import (
    MISSING_CATEGORY,
    TabularCleaner,
    anomaly_mask,
    drop_duplicate_rows,
)


def test_drop_duplicates_counts_removed_rows():
    df = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "x", "y"]})
    out, removed = drop_duplicate_rows(df)
    assert removed == 1 and len(out) == 2
    assert len(df) == 3  # the input is not mutated


def test_anomaly_mask_finds_planted_outliers():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(500, 3)), columns=list("abc"))
    df.iloc[:3] = 50.0
    mask = anomaly_mask(df, contamination=0.006, seed=0)
    assert mask[:3].all()
    assert mask.sum() <= 4


def test_cleaner_clips_with_iqr_imputes_and_reports():
    train = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8, 1000, np.nan], "c": ["a", "b", None, "a", "a", "b", "a", "b", "a", "a"]})
    cleaner = TabularCleaner(numeric=("x",), categorical=("c",), clip="iqr", iqr_factor=1.5).fit(train)
    q1, q3 = train["x"].quantile([0.25, 0.75])
    assert cleaner.upper_["x"] == pytest.approx(q3 + 1.5 * (q3 - q1))
    out = cleaner.transform(train)
    assert out["x"].max() == pytest.approx(cleaner.upper_["x"])
    assert not out["x"].isna().any()
    assert out.loc[2, "c"] == MISSING_CATEGORY
    assert cleaner.report(train) == {"imputed_cells": 2, "infinite_values": 0, "clipped_values": 1}


def test_cleaner_treats_infinite_values_as_missing_and_counts_them():
    train = pd.DataFrame({"x": [1.0, 2, 3, 4, np.inf, -np.inf, np.nan, 5], "all_inf": [np.inf] * 8})
    cleaner = TabularCleaner(numeric=("x", "all_inf"), clip="iqr").fit(train)
    assert cleaner.fill_ == {"x": 3.0, "all_inf": 0.0}  # the median of the finite values
    assert np.isfinite([cleaner.lower_["x"], cleaner.upper_["x"]]).all()
    out = cleaner.transform(train)
    assert out["x"].tolist() == [1.0, 2, 3, 4, 3, 3, 3, 5] and out["all_inf"].eq(0.0).all()
    assert cleaner.report(train) == {"imputed_cells": 11, "infinite_values": 10, "clipped_values": 0}
    # the same at scoring time: a request with ±inf (or the text "inf") is imputed, not refused
    served = cleaner.transform(pd.DataFrame({"x": ["inf", -np.inf, 2.0], "all_inf": [1.0, np.inf, "-inf"]}))
    assert served["x"].tolist() == [3.0, 3.0, 2.0] and served["all_inf"].tolist() == [1.0, 0.0, 0.0]


def test_one_infinite_cell_does_not_hide_the_outliers_of_its_column():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    df.loc[0, "b"] = np.inf  # missing (filled with the median): the forest still sees b's range
    df.loc[5:7, "b"] = 40.0
    assert np.flatnonzero(anomaly_mask(df, contamination=0.01, seed=0)).tolist() == [5, 6, 7]


def test_cleaner_quantile_clip_and_mean_imputation():
    train = pd.DataFrame({"x": np.arange(100.0)})
    cleaner = TabularCleaner(numeric=("x",), clip="quantile", quantile_low=0.1, quantile_high=0.9, impute_numeric="mean").fit(train)
    out = cleaner.transform(pd.DataFrame({"x": [-5.0, 500.0, np.nan]}))
    assert out["x"].tolist() == pytest.approx([9.9, 89.1, train["x"].clip(9.9, 89.1).mean()])


def test_cleaner_coerces_strings_and_names_missing_columns():
    cleaner = TabularCleaner(numeric=("x",), categorical=("c",)).fit(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    out = cleaner.transform(pd.DataFrame({"x": ["2.5", "junk", None], "c": [1, None, "b"]}))
    assert out["x"].tolist() == [2.5, 2.0, 2.0]
    assert out["c"].tolist() == ["1", MISSING_CATEGORY, "b"]
    with pytest.raises(ValueError, match="missing required column.*: c"):
        cleaner.transform(pd.DataFrame({"x": [1.0]}))
