"""Data files: where a user's path points, which format a file is, and reading it whole.
Pure: no mlflow, no hydra. Every failure is one ``DataError`` line naming the file.

The one file loader of ingest, predict (pandas engine), promote and monitor; the Spark
engine reads with Spark after ``table_format``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pandas as pd

from mlcycle.errors import DataError


def resolve_path(path: str, base_dir: Path | None = None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return p.resolve()


TABLE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".txt": "csv", ".gz": "csv", ".tsv": "tsv"}


def table_format(path: Path) -> str:
    """csv, tsv or parquet for a data file that exists; otherwise a one-line DataError."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"data path is a directory, not a file: {path}")
    if path.suffix.lower() not in TABLE_FORMATS:
        raise DataError(f"unsupported data file type {path.suffix.lower()!r} (use .csv or .parquet): {path}")
    return TABLE_FORMATS[path.suffix.lower()]


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; every failure is a one-line DataError naming the file, and
    repeated column names are refused."""
    kind = table_format(path)
    sep = "\t" if kind == "tsv" else ","
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            _refuse_duplicates(pq.read_schema(path).names, path)
            frame = pd.read_parquet(path)
        else:
            # pandas renames a repeated name (x, x.1): the header as written tells them apart
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
            _refuse_duplicates(header.iloc[0].tolist(), path)
            frame = pd.read_csv(path, sep=sep, low_memory=False)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path} as {path.suffix.lower().lstrip('.')}: {reason}") from None
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"data file has no rows: {path}")
    return frame


def _refuse_duplicates(names: list, path: Path) -> None:
    repeated = {name: n for name, n in Counter(names).items() if n > 1 and name != ""}
    if repeated:
        which = ", ".join(f"{name!r} ({n} times)" for name, n in repeated.items())
        raise DataError(f"{path}: duplicate column name(s) {which}; give each column its own name")


def file_digest(path: Path) -> str:
    """Content hash of a file: 16 hex characters."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
