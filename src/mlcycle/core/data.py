"""Loading, validating, typing and splitting tabular data. Pure: no mlflow, no hydra.

Every error a user can cause raises ``DataError`` with one line naming the file, column or
value at fault.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlcycle.config.schema import DataConfig, Source, Task
from mlcycle.core.tables import read_table, resolve_path
from mlcycle.errors import DataError

NUMERIC, CATEGORICAL, DATETIME = "numeric", "categorical", "datetime"
KINDS = (NUMERIC, CATEGORICAL, DATETIME)
# What a column held in the source (the model's input contract): a numeric column came as
# integers, decimals or booleans; text and dates as such.
INTEGER, DOUBLE, BOOLEAN, STRING, DATE = "integer", "double", "boolean", "string", "datetime"
DEFAULT_TYPE = {NUMERIC: DOUBLE, CATEGORICAL: STRING, DATETIME: DATE}
MAX_CLASSES = 50
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")


@dataclass(frozen=True)
class Schema:
    """What the pipeline knows about the columns: target, task and each feature's kind."""

    target: str
    task: Task
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    datetime: tuple[str, ...] = ()
    classes: tuple = ()  # sorted class labels for classification
    types: tuple[tuple[str, str], ...] = ()  # (column, type in the source), sorted by column

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + self.datetime

    def type_of(self, column: str) -> str:
        """The column's type in the source (integer, double, boolean, string, datetime);
        schemas recorded before types were kept answer from the kind."""
        return dict(self.types).get(column) or DEFAULT_TYPE[self.kind_of(column)]

    def kind_of(self, column: str) -> str:
        for kind in KINDS:
            if column in getattr(self, kind):
                return kind
        raise KeyError(column)

    def to_dict(self) -> dict:
        """JSON-ready (the step cache and a tune-worker's objective store it)."""
        return {"target": self.target, "task": self.task.value, "numeric": list(self.numeric),
                "categorical": list(self.categorical), "datetime": list(self.datetime), "classes": list(self.classes),
                "types": dict(self.types)}

    @classmethod
    def from_dict(cls, raw: dict) -> Schema:
        return cls(target=raw["target"], task=Task(raw["task"]), numeric=tuple(raw["numeric"]),
                   categorical=tuple(raw["categorical"]), datetime=tuple(raw["datetime"]), classes=tuple(raw["classes"]),
                   types=tuple(sorted(raw.get("types", {}).items())))


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    source: str  # file path, "generator:..." or "sklearn:<name>"


# --------------------------------------------------------------------------- loading
def load(cfg: DataConfig, base_dir: Path | None = None) -> LoadedData:
    """Load the configured source into a DataFrame (no validation yet)."""
    if cfg.source is Source.generator:
        from mlcycle.core.datasets import generate_sessions

        frame = generate_sessions(cfg.n_rows, cfg.seed, cfg.drift)
        return LoadedData(frame, f"generator:ecommerce?n_rows={cfg.n_rows}&seed={cfg.seed}&drift={cfg.drift}")
    if cfg.source is Source.sklearn:
        from mlcycle.core.datasets import load_bundled

        return LoadedData(load_bundled(cfg.name, cfg.target), f"sklearn:{cfg.name}")
    path = resolve_path(cfg.path or "", base_dir)
    return LoadedData(read_table(path), str(path))


# --------------------------------------------------------------------------- typing
def infer_task(target: pd.Series) -> Task:
    """binary for 2 distinct values, multiclass for text or few integer levels, else regression."""
    values = target.dropna()
    n_unique = values.nunique()
    if n_unique == 2:
        return Task.binary
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        if integral and n_unique <= 20:
            return Task.multiclass
        return Task.regression
    return Task.multiclass


def infer_schema(frame: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[Schema, pd.DataFrame]:
    """Validate the frame and decide each column's kind.

    Returns the schema and a typed copy of the frame: numeric columns as float (a few
    non-numeric cells, within ``numeric_garbage_tolerance``, become missing), datetimes
    parsed, categoricals as object. Rows with a missing (or ±inf) target are dropped.
    """
    target = cfg.target
    if target not in frame.columns:
        raise DataError(
            f"{source}: target column {target!r} not found; columns are: {', '.join(map(str, frame.columns))}"
        )
    missing_drop = [c for c in cfg.drop_columns if c not in frame.columns]
    if missing_drop:
        raise DataError(f"{source}: data.drop_columns names unknown column(s) {missing_drop}")
    if cfg.time_column and cfg.time_column not in frame.columns:
        raise DataError(f"{source}: data.time_column {cfg.time_column!r} not found")
    bad_kinds = {c: k for c, k in cfg.column_types.items() if k not in KINDS}
    if bad_kinds:
        raise DataError(f"data.column_types: unknown kind(s) {bad_kinds}; use one of {list(KINDS)}")

    frame = frame.drop(columns=list(cfg.drop_columns)).copy()
    present = frame[target].notna() & ~frame[target].isin([np.inf, -np.inf])  # ±inf counts as missing
    if not present.any():
        raise DataError(f"{source}: target column {target!r} is entirely empty (missing or ±inf in every row)")
    frame = frame[present].reset_index(drop=True)
    task = cfg.task or infer_task(frame[target])
    if task is not Task.regression:
        frame[target] = _class_labels(frame[target])
    else:
        y = pd.to_numeric(frame[target], errors="coerce")
        if y.isna().any():
            bad = frame[target][y.isna()].iloc[0]
            raise DataError(f"{source}: regression target {target!r} has non-numeric value {bad!r}")
        frame[target] = y.astype(float)

    kinds: dict[str, str] = {}
    types: dict[str, str] = {}
    for col in frame.columns:
        if col == target:
            continue
        if frame[col].isna().all():
            raise DataError(f"{source}: column {col!r} is entirely empty; drop it with data.drop_columns")
        kind = cfg.column_types.get(col) or _infer_kind(frame[col])
        types[col] = source_type(frame[col], kind)
        frame[col] = _coerce(frame[col], kind, source, col, cfg.numeric_garbage_tolerance)
        if kind == NUMERIC and not np.isfinite(frame[col]).any():
            raise DataError(f"{source}: column {col!r} is entirely empty: every value is ±inf or missing (±inf "
                            "counts as missing); drop it with data.drop_columns")
        kinds[col] = kind
    if not kinds:
        raise DataError(f"{source}: no feature columns besides the target {target!r}")

    classes: tuple = ()
    if task is not Task.regression:
        counts = frame[target].value_counts()
        if len(counts) < 2:
            raise DataError(
                f"{source}: target {target!r} has a single class ({counts.index[0]!r}); "
                "classification needs at least 2"
            )
        if len(counts) > MAX_CLASSES:
            raise DataError(
                f"{source}: target {target!r} has {len(counts)} classes; set data.task=regression "
                f"if it is a quantity (at most {MAX_CLASSES} classes supported)"
            )
        if task is Task.binary and len(counts) != 2:
            raise DataError(f"{source}: data.task=binary but target {target!r} has {len(counts)} classes")
        rare = counts[counts < 5]
        if len(rare):
            raise DataError(
                f"{source}: class {rare.index[0]!r} of target {target!r} has only {int(rare.iloc[0])} "
                "rows; each class needs at least 5"
            )
        classes = tuple(sorted(counts.index.tolist(), key=str))
    if len(frame) < cfg.min_rows:
        raise DataError(f"{source}: {len(frame)} rows with a target; at least {cfg.min_rows} needed (data.min_rows)")

    schema = Schema(
        target=target,
        task=task,
        numeric=tuple(c for c, k in kinds.items() if k == NUMERIC),
        categorical=tuple(c for c, k in kinds.items() if k == CATEGORICAL),
        datetime=tuple(c for c, k in kinds.items() if k == DATETIME),
        classes=classes,
        types=tuple(sorted(types.items())),
    )
    return schema, frame


def _class_labels(target: pd.Series) -> pd.Series:
    """Class labels as plain ints when they are integral numbers, else as strings."""
    if pd.api.types.is_bool_dtype(target):
        return target.astype(int)
    if pd.api.types.is_numeric_dtype(target):
        values = target.to_numpy(dtype=float)
        if np.all(np.mod(values, 1) == 0):
            return target.astype(int)
        return target.astype(str).astype(object)
    return target.astype(str).astype(object)


def source_type(col: pd.Series, kind: str) -> str:
    """What a column of this kind holds in the source: integers (also a nullable integer
    column, which CSV readers give as decimals with missing cells), decimals, booleans,
    text or dates."""
    if kind != NUMERIC:
        return DEFAULT_TYPE[kind]
    present = col.dropna()
    if pd.api.types.is_bool_dtype(col) or (len(present) and present.map(lambda v: isinstance(v, bool | np.bool_)).all()):
        return BOOLEAN
    if pd.api.types.is_integer_dtype(col):
        return INTEGER
    values = pd.to_numeric(present, errors="coerce")
    values = values[np.isfinite(values)]  # ±inf is missing, neither integer nor decimal
    if pd.api.types.is_float_dtype(col) and len(values) and bool(np.all(np.mod(values.to_numpy(), 1) == 0)):
        return INTEGER
    return DOUBLE


def _infer_kind(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return NUMERIC
    if pd.api.types.is_datetime64_any_dtype(col):
        return DATETIME
    values = col.dropna().astype(str)
    sample = values.iloc[:1000]
    numeric_share = pd.to_numeric(sample, errors="coerce").notna().mean()
    if numeric_share >= 0.5:
        return NUMERIC
    if sample.str.match(_DATE_LIKE).mean() >= 0.95:
        return DATETIME
    return CATEGORICAL


def coerce_column(col: pd.Series, kind: str, source: str, name: str, tolerance: float) -> pd.Series:
    """A column as its kind: numeric -> float, datetime -> datetime64, categorical -> text.
    Cells that do not parse become missing; more than ``tolerance`` of them is a DataError."""
    return _coerce(col, kind, source, name, tolerance)


def _coerce(col: pd.Series, kind: str, source: str, name: str, tolerance: float) -> pd.Series:
    if kind == NUMERIC:
        if pd.api.types.is_bool_dtype(col):
            return col.astype(float)
        parsed = pd.to_numeric(col, errors="coerce")
        garbage = parsed.isna() & col.notna()
        share = garbage.mean() if len(col) else 0.0
        if share > tolerance:
            examples = ", ".join(repr(v) for v in col[garbage].astype(str).unique()[:3])
            raise DataError(
                f"{source}: numeric column {name!r} has {share:.1%} non-numeric values (e.g. {examples}); "
                f"tolerance is {tolerance:.1%} (data.numeric_garbage_tolerance)"
            )
        return parsed.astype(float)
    if kind == DATETIME:
        parsed = pd.to_datetime(col, errors="coerce", format="mixed") if not pd.api.types.is_datetime64_any_dtype(col) else col
        garbage = parsed.isna() & col.notna()
        if garbage.mean() > tolerance:
            examples = ", ".join(repr(v) for v in col[garbage].astype(str).unique()[:3])
            raise DataError(f"{source}: datetime column {name!r} has unparseable values (e.g. {examples})")
        return parsed.astype("datetime64[ns]")
    from mlcycle.core.cleaning import as_text

    return as_text(col)


# --------------------------------------------------------------------------- splitting
def split(frame: pd.DataFrame, schema: Schema, cfg: DataConfig) -> Splits:
    """Train/validation/test split: time-ordered when ``time_column`` is set, stratified
    for classification, shuffled with the data seed otherwise."""
    from sklearn.model_selection import train_test_split

    fr = cfg.split
    if cfg.time_column:
        ordered = frame.sort_values(cfg.time_column, kind="stable").reset_index(drop=True)
        n = len(ordered)
        a, b = int(n * fr.train), int(n * (fr.train + fr.validation))
        return Splits(ordered.iloc[:a].reset_index(drop=True), ordered.iloc[a:b].reset_index(drop=True), ordered.iloc[b:].reset_index(drop=True))
    stratify = frame[schema.target] if schema.task is not Task.regression else None
    try:
        train_val, test = train_test_split(frame, test_size=fr.test, random_state=cfg.seed, stratify=stratify)
        strat2 = train_val[schema.target] if stratify is not None else None
        train, val = train_test_split(
            train_val, test_size=fr.validation / (fr.train + fr.validation), random_state=cfg.seed, stratify=strat2
        )
    except ValueError as exc:
        raise DataError(f"cannot split {len(frame)} rows into train/validation/test: {exc}") from None
    return Splits(train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True))


def restore_types(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Give a frame read back from Parquet the exact dtypes ``infer_schema`` produced.

    Parquet returns text as pandas' ``str`` dtype (missing = NaN) and may change datetime
    units; the pipeline's frames hold text as Python strings in object columns (missing =
    None). A restored split must equal the original one, digest included.
    """
    from mlcycle.core.cleaning import as_text

    out = frame.copy()
    for col in schema.numeric:
        out[col] = out[col].astype(float)
    for col in schema.categorical:
        out[col] = as_text(out[col])
    for col in schema.datetime:
        out[col] = out[col].astype("datetime64[ns]")
    target = out[schema.target]
    if schema.task is Task.regression:
        out[schema.target] = target.astype(float)
    elif not pd.api.types.is_numeric_dtype(target):
        out[schema.target] = as_text(target)
    return out


# --------------------------------------------------------------------------- describing
def digest(frame: pd.DataFrame) -> str:
    """Content hash of a frame (all rows, column names and dtypes): 16 hex characters."""
    h = hashlib.sha256()
    h.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def profile(splits: Splits, schema: Schema) -> dict:
    """Rows, missing rate per column and class balance (or target summary) per split."""
    out: dict = {"target": schema.target, "task": schema.task.value, "columns": {}, "splits": {}}
    for col in schema.features:
        out["columns"][col] = schema.kind_of(col)
    for name, part in splits.items():
        entry: dict = {
            "rows": len(part),
            "missing_rate": {c: round(float(part[c].isna().mean()), 4) for c in schema.features},
        }
        if schema.task is Task.regression:
            entry["target"] = {k: float(v) for k, v in part[schema.target].describe().items()}
        else:
            entry["class_balance"] = {
                str(k): round(float(v), 4) for k, v in part[schema.target].value_counts(normalize=True).sort_index().items()
            }
        out["splits"][name] = entry
    return out
