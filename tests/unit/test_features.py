from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcycle.core.features import DateParts, DerivedFeatures, build_encoder, plan_features


def test_derived_features_evaluate_expressions_and_fill_infinities():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 3.0]})
    derived = DerivedFeatures(expressions={"ratio": "a / b", "total": "a + b"}).fit(X)
    out = derived.transform(X)
    assert out["total"].tolist() == [2.0, 2.0, 6.0]
    assert out["ratio"].tolist() == [1.0, 1.0, 1.0]  # inf replaced by the training median (1.0)
    assert list(derived.get_feature_names_out()) == ["a", "b", "ratio", "total"]
    assert list(X.columns) == ["a", "b"]


def test_derived_feature_errors_name_the_feature():
    with pytest.raises(ValueError, match="derived feature 'bad'"):
        DerivedFeatures(expressions={"bad": "nope * 2"}).fit(pd.DataFrame({"a": [1.0]}))


def test_date_parts_and_missing_dates():
    X = pd.DataFrame({"d": pd.to_datetime(["2025-01-04 10:00", "2025-03-05 22:00", None])})
    parts = DateParts(parts=("month", "dayofweek", "hour", "is_weekend")).fit(X)
    out = parts.transform(X)
    assert list(out.columns) == ["d_month", "d_dayofweek", "d_hour", "d_is_weekend"]
    assert out.loc[0].tolist() == [1.0, 5.0, 10.0, 1.0]
    assert out.loc[2, "d_month"] == 2.0  # NaT -> training median of (1, 3)


def test_plan_splits_categoricals_by_cardinality():
    train = pd.DataFrame({"low": list("ab") * 10, "high": [f"v{i}" for i in range(20)]})
    plan = plan_features(train, (), ("low", "high"), (), {}, max_onehot_cardinality=5)
    assert plan.onehot == ("low",) and plan.high_cardinality == ("high",)
    with pytest.raises(ValueError, match="unknown date part"):
        plan_features(train, (), (), (), {}, 5, date_parts=("fortnight",))


def test_encoder_output_columns():
    rng = np.random.default_rng(0)
    n = 60
    X = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "low": rng.choice(["a", "b"], size=n),
            "high": rng.choice([f"v{i}" for i in range(15)], size=n),
            "d": pd.date_range("2025-01-01", periods=n, freq="D"),
        }
    )
    y = np.tile([0, 1], n // 2)
    plan = plan_features(X, ("x",), ("low", "high"), ("d",), {}, 5, date_parts=("month",))
    out = build_encoder(plan, seed=0).fit_transform(X, y)
    assert list(out.columns) == ["num__x", "onehot__low_a", "onehot__low_b", "high_card__high", "date__d_month"]
    assert out["num__x"].mean() == pytest.approx(0, abs=1e-9)
