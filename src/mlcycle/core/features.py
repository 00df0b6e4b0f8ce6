"""Feature engineering as scikit-learn transformers. Pure: no mlflow, no hydra.

The features part of the model Pipeline is two steps after cleaning:

* ``DerivedFeatures``: domain features declared in YAML as pandas expressions;
* a ``ColumnTransformer`` built by ``build_encoder``: scaling for numeric columns, one-hot
  for low-cardinality categoricals, a target (or ordinal) encoder for high-cardinality ones,
  and date parts for datetime columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder
from sklearn.utils.validation import check_is_fitted

DATE_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "is_weekend")


@dataclass(frozen=True)
class FeaturePlan:
    """Which encoder each column gets; decided on the training split."""

    numeric: tuple[str, ...]
    derived: tuple[str, ...]
    onehot: tuple[str, ...]
    high_cardinality: tuple[str, ...]
    datetime: tuple[str, ...]
    date_parts: tuple[str, ...]
    high_cardinality_encoder: str = "target"
    scale_numeric: bool = True

    def kinds(self) -> dict[str, str]:
        out = {c: "numeric" for c in self.numeric}
        out |= {c: "derived" for c in self.derived}
        out |= {c: "categorical_onehot" for c in self.onehot}
        out |= {c: f"categorical_{self.high_cardinality_encoder}" for c in self.high_cardinality}
        out |= {c: "datetime" for c in self.datetime}
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> FeaturePlan:
        """The inverse of ``dataclasses.asdict`` after a JSON round trip (lists -> tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def plan_features(
    train: pd.DataFrame,
    numeric: tuple[str, ...],
    categorical: tuple[str, ...],
    datetime: tuple[str, ...],
    derived: dict[str, str],
    max_onehot_cardinality: int,
    high_cardinality_encoder: str = "target",
    date_parts: tuple[str, ...] = ("month", "dayofweek", "hour"),
    scale_numeric: bool = True,
) -> FeaturePlan:
    unknown = [p for p in date_parts if p not in DATE_PARTS]
    if unknown:
        raise ValueError(f"unknown date part(s) {unknown}; known: {list(DATE_PARTS)}")
    cardinality = {c: train[c].nunique(dropna=True) for c in categorical}
    return FeaturePlan(
        numeric=tuple(numeric),
        derived=tuple(derived),
        onehot=tuple(c for c in categorical if cardinality[c] <= max_onehot_cardinality),
        high_cardinality=tuple(c for c in categorical if cardinality[c] > max_onehot_cardinality),
        datetime=tuple(datetime),
        date_parts=tuple(date_parts),
        high_cardinality_encoder=high_cardinality_encoder,
        scale_numeric=scale_numeric,
    )


class DerivedFeatures(TransformerMixin, BaseEstimator):
    """Append columns computed from pandas expressions, e.g. ``{"ratio": "a / (b + 1)"}``.

    Infinite or missing results are filled with the training median learned in ``fit``.
    """

    def __init__(self, expressions=None):
        self.expressions = expressions

    def fit(self, X, y=None):
        self.fill_ = {}
        computed = self._compute(X)
        for name in self._expressions:
            values = computed[name].replace([np.inf, -np.inf], np.nan)
            median = values.median()
            self.fill_[name] = 0.0 if pd.isna(median) else float(median)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def transform(self, X):
        check_is_fitted(self, "fill_")
        out = self._compute(X)
        for name, fill in self.fill_.items():
            out[name] = out[name].replace([np.inf, -np.inf], np.nan).fillna(fill)
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray(list(self.feature_names_in_) + list(self._expressions), dtype=object)

    @property
    def _expressions(self) -> dict[str, str]:
        return dict(self.expressions or {})

    def _compute(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for name, expr in self._expressions.items():
            try:
                out[name] = pd.to_numeric(X.eval(expr, engine="python"), errors="coerce").astype(float)
            except Exception as exc:  # surfaced with the feature's name; config is at fault
                raise ValueError(f"derived feature {name!r} = {expr!r} failed: {exc}") from exc
        return out


class DateParts(TransformerMixin, BaseEstimator):
    """Numeric parts (month, day of week, ...) of datetime columns; NaT -> training median."""

    def __init__(self, parts=("month", "dayofweek", "hour")):
        self.parts = parts

    def fit(self, X, y=None):
        parts = self._parts(X)
        self.fill_ = {c: float(parts[c].median()) if parts[c].notna().any() else 0.0 for c in parts.columns}
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "fill_")
        parts = self._parts(X)
        return parts.fillna(self.fill_)

    def get_feature_names_out(self, input_features=None):
        cols = input_features if input_features is not None else self.feature_names_in_
        return np.asarray([f"{c}_{p}" for c in cols for p in self.parts], dtype=object)

    def _parts(self, X: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for col in X.columns:
            dt = pd.to_datetime(X[col], errors="coerce", format="mixed").dt
            for part in self.parts:
                values = (dt.dayofweek >= 5) if part == "is_weekend" else getattr(dt, part)
                out[f"{col}_{part}"] = values.astype(float).where(dt.year.notna())
        return pd.DataFrame(out, index=X.index)


def build_encoder(plan: FeaturePlan, seed: int, stratified: bool = True) -> ColumnTransformer:
    """The ColumnTransformer that turns cleaned + derived columns into model inputs."""
    numeric_cols = list(plan.numeric) + list(plan.derived)
    transformers = []
    if numeric_cols:
        transformers.append(("num", StandardScaler() if plan.scale_numeric else "passthrough", numeric_cols))
    if plan.onehot:
        onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)
        transformers.append(("onehot", onehot, list(plan.onehot)))
    if plan.high_cardinality:
        if plan.high_cardinality_encoder == "target":
            # cross-fitted: each training row is encoded by a model that did not see it
            splitter = StratifiedKFold if stratified else KFold
            encoder = TargetEncoder(cv=splitter(n_splits=5, shuffle=True, random_state=seed))
        else:
            encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        transformers.append(("high_card", encoder, list(plan.high_cardinality)))
    if plan.datetime:
        transformers.append(("date", DateParts(parts=tuple(plan.date_parts)), list(plan.datetime)))
    encoder = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)
    return encoder.set_output(transform="pandas")
