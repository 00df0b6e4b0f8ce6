"""Batch scoring on Apache Spark: what ``mlcycle predict --engine spark`` runs.

pyspark is not a dependency of mlcycle (it needs Java): it lives in its own virtual
environment (``make spark-venv``: pyspark plus mlcycle, editable) and is imported inside
these functions only. What runs where:

* The driver (this process) has loaded the model through ``model_io.load_model_payload``
  (downloaded, checked against the version's manifest, rebuilt through skops' allowlist) and
  broadcasts the verified skops bytes; each task rebuilds the Pipeline from them with
  ``flavor.load_skops`` (the same allowlist). Executors never download the model.
* Spark reads the file (a CSV's columns as text, a Parquet file's with their types) and
  ``mapInPandas`` hands each Arrow batch to ``core.scoring``: ``text_as_read`` for CSV text,
  then ``check_input`` and ``scored_rows``, the code the pandas engine runs on the whole file.
* Each task sends back, in an accumulator, how many rows it read and the cells it rejected,
  keyed by the file block they came from (a task that runs again overwrites its entry). The
  driver turns block positions into file row numbers, so the rejected-rows report is the
  pandas engine's, row for row.
* The scored rows go to a Parquet folder (Spark's part files, in file order) beside the
  output; the command moves it into place once the report allows it.

Where it differs from the pandas engine: the output is Parquet only; a CSV's columns come
back as the text they were (pandas infers a type over a whole column, which a one-pass
streaming read cannot); a quoted CSV field holding a line break is not supported (Spark
splits a CSV file by lines).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from mlcycle.core.scoring import check_input, output_columns, scored_rows, text_as_read
from mlcycle.errors import ConfigError, DataError, MlcycleError, first_line

DEFAULT_MASTER = "local[2]"
INSTALL_HINT = ("the spark engine needs pyspark, which this environment lacks: run `make spark-venv`, then "
                ".venv-spark/bin/mlcycle predict --engine spark ...")
JAVA_HINT = "the spark engine needs Java: sudo apt-get install -y default-jre-headless (or set JAVA_HOME)"
# A small local session: no UI, nothing listening beyond loopback, the times the file holds.
SETTINGS = {
    "spark.driver.memory": "1g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.session.timeZone": "UTC",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",  # no _SUCCESS file
    "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning",  # pyspark's pandas-3 notice, per worker
}
LOG4J = """rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
"""
BLOCK = "__mlcycle_block__"  # the byte offset of the file split a row came from
REJECTED_COLUMNS = ["row", "column", "value", "reason", "expected"]


class Scored(NamedTuple):
    columns: list[str]  # the file's columns
    rows_in: int
    rejected: pd.DataFrame  # as ``check_input`` reports it, with file row numbers


def require() -> None:
    """pyspark importable and Java present, or one line saying how to get them."""
    if importlib.util.find_spec("pyspark") is None:
        raise MlcycleError(INSTALL_HINT)
    home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (home and (Path(home) / "bin" / "java").exists())):
        raise MlcycleError(JAVA_HINT)


def settings(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--spark-conf``) as a dict; anything else is a ConfigError."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise ConfigError(f"--spark-conf takes spark.<key>=<value>, got {pair!r}")
        out[key.strip()] = value
    return out


@contextlib.contextmanager
def session(master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None) -> Iterator[object]:
    """A SparkSession on ``master`` with ``SETTINGS`` (``conf`` overrides them), stopped on exit.
    Workers run this interpreter (``PYSPARK_PYTHON``, unless set), so they find pandas and
    mlcycle."""
    require()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory(prefix="mlcycle-spark-") as tmp:
        log4j = Path(tmp) / "log4j2.properties"
        log4j.write_text(LOG4J)
        options = {**SETTINGS, "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}", **(conf or {})}
        builder = SparkSession.builder.master(master).appName("mlcycle-predict")
        for key, value in options.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        try:
            yield spark
        finally:
            spark.stop()


def read(spark, source: Path, kind: str):
    """The file as a Spark DataFrame: Parquet with its types, CSV (header row) as text."""
    try:
        if kind == "parquet":
            return spark.read.parquet(str(source))
        return spark.read.csv(str(source), header=True, inferSchema=False, sep="\t" if kind == "tsv" else ",",
                              quote='"', escape='"', multiLine=False)
    except Exception as exc:  # pyspark's AnalysisException and friends
        raise DataError(f"cannot read {source} as {source.suffix.lower().lstrip('.')}: {reason(exc)}") from None


def score(spark, loaded, payload: bytes, columns: list, source: Path, kind: str, dst: Path) -> Scored:
    """Score ``source`` into the Parquet folder ``dst``: every batch checked against
    ``columns`` (``core.scoring.InputColumn``) and scored by the model rebuilt from ``payload``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    frame = read(spark, source, kind)
    header = list(frame.columns)
    if not header:
        raise DataError(f"data file is empty: {source}")
    check_input(pd.DataFrame(columns=header), columns, str(source))  # missing columns: the pandas engine's error
    classes = loaded.classes if loaded.probabilities else ()
    output_columns(header, classes)  # a clash with prediction columns: the same error, before any work
    fields = [StructField("prediction", _spark_type(loaded.model), True)]
    fields += [StructField(name, DoubleType(), True) for name in output_columns([], classes)[1:]]
    schema = StructType([*frame.schema.fields, *fields])
    model = spark.sparkContext.broadcast(payload)
    tally = spark.sparkContext.accumulator({}, BlockTally())
    scorer = partition_scorer(model, columns, loaded.probabilities, kind != "parquet", str(source), tally)
    try:
        with_block = frame.select("*", F.col("_metadata.file_block_start").alias(BLOCK))
        with_block.mapInPandas(scorer, schema).write.parquet(str(dst))
    except Exception as exc:  # a worker's exception arrives wrapped in Java's
        raise MlcycleError(f"spark could not score {source}: {reason(exc)}") from None
    finally:
        model.destroy()
    rows_in, rejected = file_rows(tally.value)
    if rows_in == 0:
        raise DataError(f"data file has no rows: {source}")
    return Scored(header, rows_in, rejected)


class BlockTally:
    """Accumulator of ``{block: (rows, rejected cells)}``; a block's last report wins."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, total: dict, more: dict) -> dict:  # noqa: N802 (pyspark's name)
        total.update(more)
        return total


def partition_scorer(model, columns: list, probabilities: bool, text: bool, source: str, tally):
    """The function ``mapInPandas`` runs on each partition's batches (see the module docstring)."""

    def score_partition(batches):
        from mlcycle.tracking.flavor import load_skops

        pipeline = load_skops(model.value)
        rows: dict[int, int] = {}
        cells: dict[int, list] = {}
        for batch in batches:
            blocks = batch[BLOCK].to_numpy()
            frame = batch.drop(columns=BLOCK)
            frame = text_as_read(frame) if text else frame
            position = positions(blocks, rows)
            checked = check_input(frame, columns, source)
            for bad in checked.rejected.itertuples(index=False):
                i = bad.row - 1
                cells.setdefault(int(blocks[i]), []).append((int(position[i]), *bad[1:]))
            out = scored_rows(pipeline, frame, checked, probabilities)
            if len(out):
                yield out
        tally.add({block: (n, cells.get(block, [])) for block, n in rows.items()})

    return score_partition


def positions(blocks: np.ndarray, seen: dict[int, int]) -> np.ndarray:
    """Each row's 0-based position in its block, given the rows of each block ``seen`` in
    the partition's earlier batches (updated)."""
    keys = pd.Series(blocks)
    before = keys.map({block: seen.get(int(block), 0) for block in keys.unique()})
    out = keys.groupby(keys).cumcount().to_numpy() + before.to_numpy()
    for block, n in keys.value_counts().items():
        seen[int(block)] = seen.get(int(block), 0) + int(n)
    return out


def file_rows(blocks: dict[int, tuple[int, list]]) -> tuple[int, pd.DataFrame]:
    """Rows read, and the rejected cells with file row numbers (1 = first data row): blocks
    in file order, each row's position offset by the rows of the blocks before it."""
    offset, found = 0, []
    for block in sorted(blocks):
        rows, cells = blocks[block]
        found += [(offset + position + 1, *rest) for position, *rest in cells]
        offset += rows
    rejected = pd.DataFrame(found, columns=REJECTED_COLUMNS).sort_values(["row", "column"], kind="stable")
    return offset, rejected.reset_index(drop=True)


def _spark_type(model):
    """The Spark type of the model's predictions: its classes' type, or double."""
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType

    classes = getattr(model, "classes_", None)
    if classes is None:
        return DoubleType()
    kind = np.asarray(classes).dtype.kind
    return {"i": LongType(), "u": LongType(), "f": DoubleType(), "b": BooleanType()}.get(kind, StringType())


def reason(exc: BaseException) -> str:
    """The line that says what went wrong in an error from Spark: a worker's Python
    exception (``DataError: ...``) rather than the Java stack around it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return raised[-1] if raised else first_line(exc)
