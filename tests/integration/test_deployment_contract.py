"""The registered model is a deployment contract (issue 14): MLflow's own APIs take the raw
rows of real data files, with the column kinds real exports have (integers, integers with
missing values, booleans, text, dates, decimals with missing values), as CSV and as
Parquet, and answer exactly what the in-memory Pipeline answers.

The data are scikit-learn's bundled data sets with such columns added; each is trained by a
real pipeline run and loaded back with ``mlflow.pyfunc.load_model``, the way whoever
deploys it does. ``mlflow models serve`` is exercised in test_registry_serving.py.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mlcycle import pipeline
from mlcycle.core.datasets import load_bundled

EXPORT_COLUMNS = {"year": "integer", "visits": "integer", "smoker": "boolean", "region": "string", "visit_date": "datetime"}


def export(dataset: str, fmt: str, folder) -> tuple[str, str]:
    """A bundled data set as a real export: four of its measurements (one with gaps), the
    target, and an integer, a nullable integer, a boolean, a text and a date column."""
    frame = load_bundled(dataset, "target")
    measures = [c for c in frame.columns if c != "target"][:4]
    out = frame[[*measures, "target"]].copy()
    rng = np.random.default_rng(7)
    n = len(out)
    out.loc[rng.random(n) < 0.05, measures[1]] = np.nan
    out["year"] = rng.integers(2015, 2024, n)
    visits = rng.integers(0, 12, n).astype(float)
    visits[rng.random(n) < 0.1] = np.nan
    out["visits"] = pd.array(visits, dtype="Int64")
    out["smoker"] = rng.random(n) < 0.3
    out["region"] = rng.choice(["north", "south", "east", "west"], n)
    out["visit_date"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    path = folder / f"{dataset}.{fmt}"
    if fmt == "csv":
        out.assign(visit_date=out["visit_date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    else:
        out.to_parquet(path, index=False)
    return str(path), "target"


def read(path: str) -> pd.DataFrame:
    return pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)


CASES = [("breast_cancer", "csv"), ("breast_cancer", "parquet"), ("wine", "csv"), ("diabetes", "csv")]


@pytest.mark.parametrize(("dataset", "fmt"), CASES)
def test_pyfunc_answers_the_raw_rows_of_the_training_file(tiny_cfg, tmp_path, dataset, fmt):
    path, target = export(dataset, fmt, tmp_path)
    name = f"contract-{dataset}-{fmt}"
    result = pipeline.run(tiny_cfg("data=csv", f"data.path={path}", f"data.target={target}", f"data.name={name}",
                                   "evaluate.plots=false"))
    raw = read(path).drop(columns=[target])
    schema = result.state.schema
    assert {c: schema.type_of(c) for c in EXPORT_COLUMNS} == EXPORT_COLUMNS  # the contract records the file's types
    assert raw["year"].dtype == np.int64 and raw["visits"].isna().any()

    served = mlflow.pyfunc.load_model(f"models:/mlcycle-{name}/{result.state.registered_version}")
    expected = result.state.model.predict(raw)
    np.testing.assert_array_equal(np.asarray(served.predict(raw)), expected)

    # missing values in every feature column are accepted (the Pipeline imputes them)
    gaps = raw.head(4).to_dict("records")
    for row in gaps[:2]:
        for column in row:
            row[column] = None
    assert len(served.predict(pd.DataFrame(gaps))) == 4

    # a value that does not fit its column is refused, naming the column and the row
    bad = raw.head(3).astype(object)
    bad.loc[2, "year"] = "twenty-twenty"
    with pytest.raises(MlflowException, match=r"row 3: column 'year' is not a valid integer"):
        served.predict(bad)

    # columns the model does not use are ignored
    np.testing.assert_array_equal(np.asarray(served.predict(raw.head(5).assign(comment="x"))), expected[:5])
    if schema.classes:
        proba = served.predict(raw.head(5), params={"output": "probabilities"})
        assert list(proba.columns) == ["prediction", *[f"probability_{c}" for c in result.state.model.classes_]]
        np.testing.assert_allclose(proba.iloc[:, 1:].to_numpy(), result.state.model.predict_proba(raw.head(5)))
    else:
        with pytest.raises(MlflowException, match="regression model gives no probabilities"):
            served.predict(raw.head(2), params={"output": "probabilities"})
