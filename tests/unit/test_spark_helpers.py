"""The pure parts of the Spark engine (no pyspark needed): CSV text read as pandas reads it,
file row numbers from per-block counts, Spark's errors as one line, ``--spark-conf``.
Spark itself runs in tests/e2e/test_spark_scoring.py."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlcycle import spark
from mlcycle.core.scoring import CSV_MISSING, InputColumn, check_input, text_as_read
from mlcycle.errors import ConfigError

COLUMNS = [InputColumn("n", "integer"), InputColumn("flag", "boolean"), InputColumn("label", "string")]


def test_csv_missing_is_exactly_what_pandas_reads_as_missing():
    tokens = sorted(CSV_MISSING - {""})
    text = "x\n" + "\n".join(f'"{t}"' for t in tokens) + "\n" + "\n".join(["NAN", "Null", "na", "none", " NA", "-"])
    read = pd.read_csv(io.StringIO(text), dtype=str)["x"]
    assert read.isna().tolist() == [True] * len(tokens) + [False] * 6
    assert pd.read_csv(io.StringIO('x,y\n"",1\n'))["x"].isna().all()  # the empty field too


def test_csv_text_is_checked_like_the_same_file_read_by_pandas():
    text = "n,flag,label\n1,True,a\nNA,False,NA\n,true,\nabc,maybe,n/a\n7,,x\n"
    by_pandas = check_input(pd.read_csv(io.StringIO(text)), COLUMNS, "f.csv")
    as_text = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)  # what Spark hands over
    by_spark = check_input(text_as_read(as_text), COLUMNS, "f.csv")
    pd.testing.assert_frame_equal(by_spark.frame, by_pandas.frame)
    pd.testing.assert_frame_equal(by_spark.rejected, by_pandas.rejected)
    assert by_spark.rejected["row"].tolist() == [4, 4]


def test_rows_are_numbered_by_position_in_their_file_block():
    seen: dict[int, int] = {}
    assert spark.positions(np.array([0, 0, 0]), seen).tolist() == [0, 1, 2]
    assert spark.positions(np.array([0, 500, 500]), seen).tolist() == [3, 0, 1]  # a batch across two blocks
    assert seen == {0: 4, 500: 2}
    # blocks arrive in any order; file rows follow block offsets (1 = first data row)
    cell = ("price", "abc", "'abc' is not a valid double", "double")
    rows, rejected = spark.file_rows({900: (5, [(0, *cell)]), 0: (4, [(3, *cell)]), 500: (2, [(1, *cell), (1, "day", "x", "r", "datetime")])})
    assert rows == 11
    assert rejected[["row", "column"]].values.tolist() == [[4, "price"], [6, "day"], [6, "price"], [7, "price"]]
    assert list(rejected.columns) == ["row", "column", "value", "reason", "expected"]


def test_an_error_from_a_spark_worker_is_its_python_exception_line():
    text = ("An error occurred while calling o123.parquet.\n: org.apache.spark.SparkException: Job aborted.\n"
            "Traceback (most recent call last):\n  File \"worker.py\", line 1\n"
            "mlcycle.errors.DataError: input already has column(s) ['prediction']\n\tat org.apache.spark.X")
    assert spark.reason(RuntimeError(text)) == "mlcycle.errors.DataError: input already has column(s) ['prediction']"
    assert spark.reason(RuntimeError("Path does not exist: file:/x.csv\nmore")) == "Path does not exist: file:/x.csv"


def test_spark_conf_takes_spark_keys_only():
    assert spark.settings(["spark.driver.memory=2g", "spark.sql.x=a=b"]) == {"spark.driver.memory": "2g", "spark.sql.x": "a=b"}
    with pytest.raises(ConfigError, match=r"--spark-conf takes spark.<key>=<value>, got 'driver.memory=2g'"):
        spark.settings(["driver.memory=2g"])
