"""Batch scoring input checks and output frames. Pure: no mlflow, no hydra.

The model's input columns and their types come from its input contract (the types the
training data had: integer, double, boolean, string, datetime) or, for models logged before
contracts, its MLflow signature (double, long, ...). A row is rejected when one of its cells
cannot be read as the column's type (``"abc"`` in a numeric column, ``"yesterday"`` in a
datetime column); integers, decimals and missing values all fit a numeric column.
Missing cells are not errors: the model's cleaning step imputes them. A required column that
is absent altogether is one ``DataError`` listing every missing column.

Row numbers are 1-based data rows: row 1 is the first row after a CSV header (line 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcycle.errors import DataError

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
MAX_REASONS_SHOWN = 5


@dataclass(frozen=True)
class InputColumn:
    name: str
    type: str  # integer, double, boolean, string, datetime (or an MLflow type name: long, float)
    required: bool = True


@dataclass(frozen=True)
class Checked:
    frame: pd.DataFrame  # the model's columns, typed, only the accepted rows
    accepted: np.ndarray  # boolean mask over the input rows
    rejected: pd.DataFrame  # row, column, value, reason, expected type (one line per bad cell)


def check_input(frame: pd.DataFrame, columns: list[InputColumn], source: str) -> Checked:
    """Type the model's columns and find the rows whose values do not fit."""
    missing = [c.name for c in columns if c.required and c.name not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {', '.join(missing)}; the model needs "
            f"{', '.join(c.name for c in columns)}"
        )
    typed = pd.DataFrame(index=frame.index)
    problems: list[dict] = []
    for col in columns:
        if col.name not in frame.columns:
            continue
        values = frame[col.name]
        parsed, bad = _parse(values, col.type)
        typed[col.name] = parsed
        for idx in np.flatnonzero(bad):
            problems.append(
                {
                    "row": int(idx) + 1,
                    "column": col.name,
                    "value": str(values.iloc[idx]),
                    "reason": f"{values.iloc[idx]!r} is not a valid {col.type}",
                    "expected": col.type,
                }
            )
    rejected = pd.DataFrame(problems, columns=["row", "column", "value", "reason", "expected"]).sort_values(
        ["row", "column"], kind="stable"
    )
    accepted = np.ones(len(frame), dtype=bool)
    accepted[rejected["row"].to_numpy(dtype=int) - 1] = False
    return Checked(typed[accepted].reset_index(drop=True), accepted, rejected.reset_index(drop=True))


def _parse(values: pd.Series, kind: str) -> tuple[pd.Series, np.ndarray]:
    present = values.notna().to_numpy()
    if kind in NUMERIC_TYPES:
        parsed = pd.to_numeric(values, errors="coerce").astype(float)
    elif kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(values):
            parsed = values.astype("datetime64[ns]")
        else:
            parsed = pd.to_datetime(values, errors="coerce", format="mixed").astype("datetime64[ns]")
    elif kind == "boolean":
        text = values.astype(str).str.strip().str.lower()
        mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
        parsed = text.map(mapping).where(values.notna(), None)
    else:  # string and anything else: every value is acceptable text
        present_text = values.astype(str).to_numpy(dtype=object)
        return pd.Series(np.where(present, present_text, None), index=values.index, dtype=object), np.zeros(len(values), bool)
    bad = present & parsed.isna().to_numpy()
    return parsed, bad


def describe_rejections(rejected: pd.DataFrame, limit: int = MAX_REASONS_SHOWN, show_values: bool = True) -> str:
    """``row 3: column 'price': 'abc' is not a valid double; ...`` for the first few
    (``show_values=False``: ``row 3: column 'price' is not a valid double``, for answers that
    must not echo what was sent)."""
    lines = [f"row {r.row}: column {r.column!r}: {r.reason}" if show_values else
             f"row {r.row}: column {r.column!r} is not a valid {r.expected}" for r in rejected.head(limit).itertuples()]
    more = rejected["row"].nunique() - rejected.head(limit)["row"].nunique()
    if more > 0:
        lines.append(f"... and {more} more row(s)")
    return "; ".join(lines)


def prediction_frame(predictions, proba=None, classes=()) -> pd.DataFrame:
    """``prediction`` and, for classifiers, ``probability_<class>`` per class."""
    out = pd.DataFrame({"prediction": np.asarray(predictions)})
    if proba is not None:
        proba = np.asarray(proba)
        for i, cls in enumerate(classes):
            out[f"probability_{cls}"] = proba[:, i]
    return out


def output_frame(frame: pd.DataFrame, accepted: np.ndarray, predictions, proba=None, classes=()) -> pd.DataFrame:
    """The accepted input rows (all their columns) plus ``prediction_frame``'s columns."""
    out = frame[accepted].reset_index(drop=True)
    scored = prediction_frame(predictions, proba, classes)
    clash = [n for n in scored.columns if n in out.columns]
    if clash:
        raise DataError(f"input already has column(s) {clash}; rename them before scoring")
    return pd.concat([out, scored], axis=1)
