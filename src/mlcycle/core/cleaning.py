"""Data cleaning. Pure: no mlflow, no hydra.

Two kinds of cleaning, on purpose:

* Row-level cleaning (duplicates, anomalous rows) changes which rows a model learns from.
  It applies to the training data only and never at prediction time: a scoring request
  must get a prediction for every row it sends.
* Cell-level cleaning (type coercion, outlier clipping, imputation) is ``TabularCleaner``,
  the first step of the model Pipeline, so serving applies exactly what training fitted.

A numeric ±inf is a missing value everywhere here: no estimator can use it, and clipping it
to a bound would invent a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

MISSING_CATEGORY = "__missing__"


def drop_duplicate_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Remove exact duplicate rows; returns the new frame and how many were removed."""
    deduped = frame.drop_duplicates().reset_index(drop=True)
    return deduped, len(frame) - len(deduped)


def anomaly_mask(numeric: pd.DataFrame, contamination: float, seed: int) -> np.ndarray:
    """True for rows an IsolationForest, fitted on these rows, calls anomalous."""
    from sklearn.ensemble import IsolationForest

    if numeric.shape[1] == 0 or len(numeric) < 20 or contamination <= 0:
        return np.zeros(len(numeric), dtype=bool)
    numeric = numeric.apply(lambda col: finite(_numbers(col)))
    filled = numeric.fillna(numeric.median(numeric_only=True)).fillna(0.0)
    forest = IsolationForest(contamination=contamination, random_state=seed, n_estimators=100)
    return forest.fit_predict(filled.to_numpy(dtype=float)) == -1


def finite(values: pd.Series) -> pd.Series:
    """Float numbers with ±inf made missing."""
    return values.where(np.isfinite(values))


def as_text(values: pd.Series) -> pd.Series:
    """Values as Python strings in an object column; missing stays None."""
    present = values.notna().to_numpy()
    text = values.astype(str).to_numpy(dtype=object)
    return pd.Series(np.where(present, text, None), index=values.index, dtype=object)


class TabularCleaner(TransformerMixin, BaseEstimator):
    """Coerce column types, clip numeric outliers and impute missing cells (±inf included).

    Bounds and fill values are learned in ``fit`` (training rows only). ``transform``
    returns a DataFrame with the same feature columns: numeric as float, categorical as
    strings (missing -> ``"__missing__"``), datetime as datetime64 (missing left as NaT for
    the date-part encoder to fill).
    """

    def __init__(
        self,
        numeric=(),
        categorical=(),
        datetime=(),
        impute_numeric="median",
        clip="iqr",
        iqr_factor=3.0,
        quantile_low=0.005,
        quantile_high=0.995,
    ):
        self.numeric = numeric
        self.categorical = categorical
        self.datetime = datetime
        self.impute_numeric = impute_numeric
        self.clip = clip
        self.iqr_factor = iqr_factor
        self.quantile_low = quantile_low
        self.quantile_high = quantile_high

    def fit(self, X, y=None):
        X = self._coerce(X)
        self.lower_, self.upper_, self.fill_ = {}, {}, {}
        for col in self.numeric:
            values = X[col].dropna()
            if values.empty:
                self.lower_[col], self.upper_[col], self.fill_[col] = -np.inf, np.inf, 0.0
                continue
            lo, hi = self._bounds(values)
            self.lower_[col], self.upper_[col] = lo, hi
            clipped = values.clip(lo, hi)
            fill = clipped.median() if self.impute_numeric == "median" else clipped.mean()
            self.fill_[col] = float(fill)
        self.feature_names_in_ = np.asarray(self._columns, dtype=object)
        self.n_features_in_ = len(self._columns)
        return self

    def transform(self, X):
        check_is_fitted(self, "fill_")
        X = self._coerce(X)
        for col in self.numeric:
            X[col] = X[col].clip(self.lower_[col], self.upper_[col]).fillna(self.fill_[col])
        for col in self.categorical:
            X[col] = X[col].fillna(MISSING_CATEGORY)
        return X

    def report(self, X) -> dict[str, int]:
        """What ``transform`` changes on X: cells imputed (±inf ones also counted apart) and
        values clipped."""
        check_is_fitted(self, "fill_")
        cleaned = self._coerce(X)
        raw = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self._columns)
        infinite = sum(int(np.isinf(_numbers(raw[col])).sum()) for col in self.numeric)
        imputed = int(cleaned[list(self.numeric) + list(self.categorical)].isna().sum().sum())
        clipped = 0
        for col in self.numeric:
            values = cleaned[col]
            clipped += int(((values < self.lower_[col]) | (values > self.upper_[col])).sum())
        return {"imputed_cells": imputed, "infinite_values": infinite, "clipped_values": clipped}

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self._columns, dtype=object)

    @property
    def _columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical) + list(self.datetime)

    def _bounds(self, values: pd.Series) -> tuple[float, float]:
        if self.clip == "iqr":
            q1, q3 = values.quantile([0.25, 0.75])
            spread = q3 - q1
            return float(q1 - self.iqr_factor * spread), float(q3 + self.iqr_factor * spread)
        if self.clip == "quantile":
            lo, hi = values.quantile([self.quantile_low, self.quantile_high])
            return float(lo), float(hi)
        return -np.inf, np.inf

    def _coerce(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=self._columns)
        missing = [c for c in self._columns if c not in X.columns]
        if missing:
            raise ValueError(f"missing required column(s): {', '.join(missing)}")
        out = pd.DataFrame(index=X.index)
        for col in self.numeric:
            out[col] = finite(_numbers(X[col]))
        for col in self.categorical:
            out[col] = as_text(X[col])
        for col in self.datetime:
            out[col] = pd.to_datetime(X[col], errors="coerce", format="mixed").astype("datetime64[ns]")
        return out


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype(float)
