"""Loading, typing, validating and splitting (pure code, small inline frames)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcycle.config.schema import DataConfig, Source, SplitConfig, Task
from mlcycle.core import data, tables
from mlcycle.errors import DataError


def cfg(**overrides) -> DataConfig:
    base = dict(name="t", source=Source.file, path="x.csv", target="y", seed=0, min_rows=10)
    return DataConfig(**{**base, **overrides})


def frame(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "cat": rng.choice(["a", "b", "c"], size=n),
            "when": pd.date_range("2025-01-01", periods=n, freq="D").astype(str),
            "y": np.tile(["yes", "no"], n // 2),
        }
    )


def test_infer_task():
    assert data.infer_task(pd.Series([0, 1, 1, 0])) is Task.binary
    assert data.infer_task(pd.Series(["a", "b", "c"])) is Task.multiclass
    assert data.infer_task(pd.Series([1, 2, 3, 4, 5])) is Task.multiclass
    assert data.infer_task(pd.Series(np.linspace(0, 1, 50))) is Task.regression


def test_infer_schema_kinds_and_string_target():
    schema, typed = data.infer_schema(frame(), cfg(), "f.csv")
    assert schema.task is Task.binary
    assert schema.numeric == ("num",) and schema.categorical == ("cat",) and schema.datetime == ("when",)
    assert schema.classes == ("no", "yes")
    assert pd.api.types.is_datetime64_any_dtype(typed["when"])


def test_missing_target_lists_columns():
    with pytest.raises(DataError, match=r"f.csv: target column 'label' not found; columns are: num, cat, when, y"):
        data.infer_schema(frame(), cfg(target="label"), "f.csv")


def test_single_class_target_is_rejected():
    df = frame().assign(y="yes")
    with pytest.raises(DataError, match="single class"):
        data.infer_schema(df, cfg(task=Task.binary), "f.csv")


def test_numeric_garbage_beyond_tolerance_names_column_and_values():
    df = frame()
    df["num"] = df["num"].astype(object)
    df.loc[:4, "num"] = "oops"  # 5 of 40 = 12.5 %
    with pytest.raises(DataError, match=r"numeric column 'num' has 12.5% non-numeric values \(e.g. 'oops'\)"):
        data.infer_schema(df, cfg(), "f.csv")


def test_numeric_garbage_within_tolerance_becomes_missing():
    df = frame(n=200)
    df["num"] = df["num"].astype(object)
    df.loc[0, "num"] = "n/a"
    schema, typed = data.infer_schema(df, cfg(), "f.csv")
    assert "num" in schema.numeric
    assert np.isnan(typed.loc[0, "num"])


def test_rows_with_missing_target_are_dropped_and_too_few_rows_rejected():
    df = frame()
    df.loc[:5, "y"] = None
    _, typed = data.infer_schema(df, cfg(), "f.csv")
    assert len(typed) == 34
    with pytest.raises(DataError, match="at least 100 needed"):
        data.infer_schema(frame(), cfg(min_rows=100), "f.csv")


def test_rare_class_and_unknown_drop_column_are_rejected():
    df = frame()
    df.loc[0, "y"] = "rare"
    with pytest.raises(DataError, match="class 'rare'.*only 1 rows"):
        data.infer_schema(df, cfg(), "f.csv")
    with pytest.raises(DataError, match="unknown column"):
        data.infer_schema(frame(), cfg(drop_columns=["nope"]), "f.csv")


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*missing.csv"):
        tables.read_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="data file is empty: .*empty.csv"):
        tables.read_table(empty)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DataError, match="cannot read .*garbage.csv"):
        tables.read_table(garbage)
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("not parquet")
    with pytest.raises(DataError, match="cannot read .*bad.parquet"):
        tables.read_table(bad_parquet)
    with pytest.raises(DataError, match="unsupported data file type '.xlsx'"):
        (tmp_path / "a.xlsx").write_text("x")
        tables.read_table(tmp_path / "a.xlsx")


def test_csv_and_parquet_round_trip(tmp_path):
    df = frame()
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    assert tables.read_table(tmp_path / "a.csv").shape == df.shape
    assert tables.read_table(tmp_path / "a.parquet").shape == df.shape


def test_duplicate_column_names_are_refused_naming_them_and_the_file(tmp_path):
    header = "x,label,x,w,w,w,x.1\n"  # pandas would read x, label, x.1, w, w.1, w.2, x.1.1
    (tmp_path / "dup.csv").write_text(header + "1,a,2,3,4,5,6\n")
    with pytest.raises(DataError, match=r"dup.csv: duplicate column name\(s\) 'x' \(2 times\), 'w' \(3 times\);"):
        tables.read_table(tmp_path / "dup.csv")
    (tmp_path / "dup.tsv").write_text("x\tx\n1\t2\n")
    with pytest.raises(DataError, match=r"dup.tsv: duplicate column name\(s\) 'x' \(2 times\)"):
        tables.read_table(tmp_path / "dup.tsv")
    # a column really named x.1 next to x is fine, and so is a file whose names are unique
    (tmp_path / "ok.csv").write_text('x,x.1,"a,b",label\n1,2,3,a\n')
    assert list(tables.read_table(tmp_path / "ok.csv").columns) == ["x", "x.1", "a,b", "label"]
    # Parquet can hold repeated names (pyarrow writes them; pandas cannot read them back)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array([1, 2]), pa.array([3, 4]), pa.array(["a", "b"])], names=["x", "x", "label"])
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(DataError, match=r"dup.parquet: duplicate column name\(s\) 'x' \(2 times\)"):
        tables.read_table(tmp_path / "dup.parquet")


def test_an_entirely_empty_target_is_named_as_the_target():
    df = frame().assign(y=np.nan)
    with pytest.raises(DataError, match=r"f.csv: target column 'y' is entirely empty"):
        data.infer_schema(df, cfg(), "f.csv")
    df = frame().assign(y=np.inf)
    df.loc[::2, "y"] = -np.inf
    with pytest.raises(DataError, match=r"target column 'y' is entirely empty \(missing or ±inf in every row\)"):
        data.infer_schema(df, cfg(task=Task.regression), "f.csv")


def test_infinite_values_count_as_missing_at_ingest():
    df = frame().assign(y=np.linspace(0, 1, 40), inf=np.inf)
    df.loc[::2, "inf"] = -np.inf
    df.loc[3, "inf"] = np.nan
    with pytest.raises(DataError, match=r"f.csv: column 'inf' is entirely empty: every value is ±inf or missing"):
        data.infer_schema(df, cfg(), "f.csv")
    df.loc[:4, "y"] = [np.inf, -np.inf, 0.5, np.inf, 0.2]  # rows with an infinite target are dropped
    df.loc[7, "inf"] = 1.5  # one finite value: the column stays, its ±inf cells for the cleaner
    schema, typed = data.infer_schema(df, cfg(), "f.csv")
    assert "inf" in schema.numeric and len(typed) == 37 and np.isfinite(typed["y"]).all()
    assert np.isinf(typed["inf"]).sum() == 36


def test_stratified_split_keeps_class_balance_and_is_seeded():
    df = frame(n=200)
    schema, typed = data.infer_schema(df, cfg(), "f.csv")
    split = data.split(typed, schema, cfg())
    assert [len(p) for _, p in split.items()] == [120, 40, 40]
    for _, part in split.items():
        assert part["y"].value_counts(normalize=True)["yes"] == pytest.approx(0.5)
    again = data.split(typed, schema, cfg())
    pd.testing.assert_frame_equal(split.test, again.test)


def test_time_column_gives_time_ordered_split():
    df = frame(n=100).sample(frac=1.0, random_state=1)
    c = cfg(time_column="when", split=SplitConfig(0.6, 0.2, 0.2))
    schema, typed = data.infer_schema(df, c, "f.csv")
    split = data.split(typed, schema, c)
    assert split.train["when"].max() < split.validation["when"].min()
    assert split.validation["when"].max() < split.test["when"].min()


def test_digest_is_stable_and_content_sensitive():
    df = frame()
    assert data.digest(df) == data.digest(df.copy())
    changed = df.copy()
    changed.loc[3, "num"] += 1e-9
    assert data.digest(changed) != data.digest(df)


def test_profile_reports_rows_missing_and_balance():
    df = frame(n=100)
    df.loc[:9, "num"] = np.nan
    schema, typed = data.infer_schema(df, cfg(), "f.csv")
    prof = data.profile(data.split(typed, schema, cfg()), schema)
    assert prof["splits"]["train"]["rows"] == 60
    total_missing = sum(prof["splits"][s]["missing_rate"]["num"] * prof["splits"][s]["rows"] for s in ("train", "validation", "test"))
    assert total_missing == pytest.approx(10)
    assert prof["splits"]["test"]["class_balance"] == {"no": 0.5, "yes": 0.5}
