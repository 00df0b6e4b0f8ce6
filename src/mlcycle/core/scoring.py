"""Batch scoring input checks and output frames. Pure: no mlflow, no hydra.

The model's input columns and their types come from its input contract (the types the
training data had: integer, double, boolean, string, datetime) or, for models logged before
contracts, its MLflow signature (double, long, ...). A row is rejected when one of its cells
cannot be read as the column's type (``"abc"`` in a numeric column, ``"yesterday"`` in a
datetime column); integers, decimals and missing values all fit a numeric column.
Missing cells are not errors: the model's cleaning step imputes them. A required column that
is absent altogether is one ``DataError`` listing every missing column.

Row numbers are 1-based data rows: row 1 is the first row after a CSV header (line 2).

Both batch engines (pandas, Spark) score through ``scored_rows``: the same check, the same
model call, the same output columns; Spark calls it once per Arrow batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcycle.errors import DataError

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
MAX_REASONS_SHOWN = 5
# The text pandas' CSV reader takes as a missing value (its default ``na_values``, plus the
# empty field). Spark reads these as text; ``text_as_read`` makes them missing again.
CSV_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                         "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


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


def prediction_columns(classes=()) -> list[str]:
    """``prediction`` and, for classifiers, ``probability_<class>`` per class."""
    return ["prediction", *[f"probability_{cls}" for cls in classes]]


def prediction_frame(predictions, proba=None, classes=()) -> pd.DataFrame:
    """The columns of ``prediction_columns``, filled."""
    out = pd.DataFrame({"prediction": np.asarray(predictions)})
    if proba is not None:
        proba = np.asarray(proba)
        for i, name in enumerate(prediction_columns(classes)[1:]):
            out[name] = proba[:, i]
    return out


def output_columns(input_columns, classes=()) -> list[str]:
    """The input's columns plus ``prediction_columns``; a name both have is a DataError."""
    scored = prediction_columns(classes)
    clash = [n for n in scored if n in set(input_columns)]
    if clash:
        raise DataError(f"input already has column(s) {clash}; rename them before scoring")
    return [*input_columns, *scored]


def output_frame(frame: pd.DataFrame, accepted: np.ndarray, predictions, proba=None, classes=()) -> pd.DataFrame:
    """The accepted input rows (all their columns) plus ``prediction_frame``'s columns."""
    output_columns(frame.columns, classes if proba is not None else ())
    out = frame[accepted].reset_index(drop=True)
    return pd.concat([out, prediction_frame(predictions, proba, classes)], axis=1)


def scored_rows(model, frame: pd.DataFrame, checked: Checked, probabilities: bool) -> pd.DataFrame:
    """The accepted rows of ``frame`` (checked by ``check_input``) plus the model's
    ``prediction`` and, with ``probabilities``, one ``probability_<class>`` per class: what
    either batch engine writes."""
    classes = tuple(model.classes_) if probabilities else ()
    if len(checked.frame):
        predictions = model.predict(checked.frame)
        proba = model.predict_proba(checked.frame) if probabilities else None
    else:  # nothing to score: the same columns, no rows
        predictions = np.asarray(getattr(model, "classes_", np.zeros(0)))[:0]
        proba = np.zeros((0, len(classes))) if probabilities else None
    return output_frame(frame, checked.accepted, predictions, proba, classes)


def text_as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame of CSV text (Spark reads every CSV column as text) with what pandas' CSV reader
    takes as missing (``CSV_MISSING``) made missing, as text (object) columns: then
    ``check_input`` parses each value with the same code as for a file pandas read."""
    out = {}
    for name, values in frame.items():
        text = values.astype(object)
        out[name] = text.where(values.notna() & ~text.isin(CSV_MISSING), None)
    return pd.DataFrame(out, index=frame.index)
