"""`mlcycle predict --engine spark` against the pandas engine, run for real: pyspark on
local[2] in its own virtual environment (MLCYCLE_SPARK_VENV; `make spark-venv`, which
.ci/run calls), on a real export (integers, nullable integers, booleans, text, dates,
decimals with gaps) with bad rows, as CSV split into several Spark partitions and as
Parquet; and `mlflow.pyfunc.spark_udf` on the registered model.

The model is a histogram gradient boosting Pipeline: its probabilities do not depend on
which rows share a batch, so the two engines must agree bit for bit. (A linear model's
need not: BLAS may round a row's dot product differently depending on where the row falls
in the batch; seen as a 1-ulp difference in 2 of 5,000 rows.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.cli import main
from tests.conftest import PROJECT_ROOT, TINY, compose, subprocess_env, venv_python
from tests.integration.test_deployment_contract import export

pytestmark = [pytest.mark.slow, pytest.mark.spark]
NAME = "mlcycle-spark"
PARTITION_BYTES = 12_000  # the ~60 kB export becomes several Spark partitions (file blocks)


def spark_python() -> str:
    return venv_python("MLCYCLE_SPARK_VENV", "a virtual environment with pyspark and mlcycle (make spark-venv)")


@pytest.fixture
def registered(store, tmp_path):
    """A real pipeline run on the breast-cancer export; registers models:/mlcycle-spark/1."""
    spark_python()  # skip before training when there is no Spark environment
    path, target = export("breast_cancer", "csv", tmp_path)
    overrides = [o for o in TINY if not o.startswith("model=")] + [
        "model=hist_gradient_boosting", "evaluate.plots=false", "report.enabled=false",
        "data=csv", f"data.path={path}", f"data.target={target}", "data.name=spark"]
    result = pipeline.run(compose(overrides))
    assert result.state.registered_version == "1"
    return Path(path), store


def spark_run(store: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    """``mlcycle predict --engine spark`` in the Spark environment (a fresh process, as a user runs it)."""
    env = subprocess_env(store, root)
    env["PYTHONPATH"] = str(PROJECT_ROOT / "src")
    env.pop("PYSPARK_PYTHON", None)  # mlcycle points Spark's workers at its own interpreter
    return subprocess.run([spark_python(), "-m", "mlcycle", "predict", "--engine", "spark", *args],
                          env=env, capture_output=True, text=True, timeout=900, cwd=root)


def predict_run(client: MlflowClient, output: Path):
    exp = client.get_experiment_by_name("mlcycle")
    runs = client.search_runs([exp.experiment_id], "tags.`mlcycle.run_kind` = 'predict'")
    (run,) = [r for r in runs if r.data.params.get("scoring.output") == str(output)]
    return run


def rejected_rows(run) -> str:
    return Path(mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/scoring/rejected_rows.csv")).read_text()


def summary(stdout: str) -> str:
    """predict's console lines without the run each names (every predict is its own run)."""
    return "\n".join(line.split(" on run ")[0] for line in stdout.splitlines() if not line.startswith("scoring run "))


def with_bad_rows(source: Path, folder: Path) -> Path:
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame.insert(0, "row_id", range(1, len(frame) + 1))
    frame.loc[2, "year"] = "twenty-twenty"  # row 3
    frame.loc[7, "visits"] = "NA"  # a missing value in pandas' spelling: accepted by both
    frame.loc[399, ["smoker", "visit_date"]] = ["maybe", "someday"]  # row 400, two bad cells
    frame.loc[540, frame.columns[1]] = "n/a?"  # row 541, a measurement
    bad = folder / "bad.csv"
    frame.to_csv(bad, index=False)
    return bad


def test_spark_and_pandas_scoring_agree_row_for_row(registered, tmp_path, capsys):
    source, store = registered
    bad = with_bad_rows(source, tmp_path)
    uri = f"models:/{NAME}/1"

    pandas_out = tmp_path / "pandas.parquet"
    assert main(["predict", "--input", str(bad), "--output", str(pandas_out), "--model-uri", uri]) == 0
    pandas_lines = capsys.readouterr().out.strip().replace(str(pandas_out), "OUT")
    spark_out = tmp_path / "spark.parquet"
    proc = spark_run(store, tmp_path, "--input", str(bad), "--output", str(spark_out), "--model-uri", uri,
                     "--spark-conf", f"spark.sql.files.maxPartitionBytes={PARTITION_BYTES}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the same console lines, counts and rejected-rows report
    assert summary(proc.stdout.strip().replace(str(spark_out), "OUT")) == summary(pandas_lines)
    assert "rejected 3 row(s): row 3: column 'year': 'twenty-twenty' is not a valid integer; row 400: " in pandas_lines
    client = MlflowClient()
    pandas_run, spark_run_ = predict_run(client, pandas_out), predict_run(client, spark_out)
    counts = ("rows_in", "rows_scored", "rows_rejected")
    assert [spark_run_.data.metrics[k] for k in counts] == [pandas_run.data.metrics[k] for k in counts] == [569, 566, 3]
    assert rejected_rows(spark_run_) == rejected_rows(pandas_run)
    assert spark_run_.info.status == "FINISHED" and spark_run_.data.params["scoring.engine"] == "spark"
    assert spark_run_.data.tags["mlcycle.model_version"] == "1"
    (dataset,) = spark_run_.inputs.dataset_inputs
    assert dataset.dataset.name == "bad.csv"

    # the same predictions and probabilities, in file order, from several partitions
    assert len(list(spark_out.glob("part-*.parquet"))) > 1
    spark_rows, pandas_rows = pd.read_parquet(spark_out), pd.read_parquet(pandas_out)
    assert spark_rows["row_id"].astype(int).tolist() == pandas_rows["row_id"].tolist()
    assert 8 in pandas_rows["row_id"].tolist() and pd.isna(spark_rows.loc[spark_rows["row_id"] == "8", "visits"]).all()
    scored = ["prediction", "probability_benign", "probability_malignant"]
    assert list(spark_rows.columns[-3:]) == list(pandas_rows.columns[-3:]) == scored
    np.testing.assert_array_equal(spark_rows[scored].to_numpy(), pandas_rows[scored].to_numpy())

    # --on-bad-rows fail: the pandas engine's error, no output, the run FAILED
    strict = tmp_path / "strict.parquet"
    assert main(["predict", "--input", str(bad), "--output", str(tmp_path / "p.parquet"), "--model-uri", uri,
                 "--on-bad-rows", "fail"]) == 2
    pandas_error = capsys.readouterr().err.strip()
    proc = spark_run(store, tmp_path, "--input", str(bad), "--output", str(strict), "--model-uri", uri,
                     "--on-bad-rows", "fail")
    assert proc.returncode == 2
    assert summary(proc.stderr.strip().splitlines()[-1]) == summary(pandas_error)
    assert not strict.exists() and not list(tmp_path.glob(".strict*"))
    assert predict_run(client, strict).info.status == "FAILED"

    # a missing column: the pandas engine's one line
    missing = tmp_path / "missing.csv"
    pd.read_csv(bad, dtype=str).drop(columns=["year", "region"]).to_csv(missing, index=False)
    assert main(["predict", "--input", str(missing), "--output", str(tmp_path / "m.parquet"), "--model-uri", uri]) == 2
    pandas_error = capsys.readouterr().err.strip()
    proc = spark_run(store, tmp_path, "--input", str(missing), "--output", str(tmp_path / "ms.parquet"), "--model-uri", uri)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == pandas_error
    assert pandas_error.startswith(f"error: {missing}: missing required column(s) year, region; the model needs ")


def test_spark_reads_parquet_with_its_types_and_agrees_with_pandas(registered, tmp_path, capsys):
    _, store = registered
    source = Path(export("breast_cancer", "parquet", tmp_path)[0])
    uri = f"models:/{NAME}/1"
    pandas_out, spark_out = tmp_path / "pandas.parquet", tmp_path / "spark.parquet"
    assert main(["predict", "--input", str(source), "--output", str(pandas_out), "--model-uri", uri]) == 0
    pandas_lines = capsys.readouterr().out.strip().replace(str(pandas_out), "OUT")
    proc = spark_run(store, tmp_path, "--input", str(source), "--output", str(spark_out), "--model-uri", uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc.stdout.strip().replace(str(spark_out), "OUT")) == summary(pandas_lines)
    spark_rows, pandas_rows = pd.read_parquet(spark_out), pd.read_parquet(pandas_out)
    pd.testing.assert_frame_equal(spark_rows, pandas_rows, check_dtype=False)  # values, nulls and order


SPARK_UDF = """
import json, os, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore", category=FutureWarning)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
import mlflow
import pyspark.sql.functions as F
from pyspark.sql import SparkSession
from mlcycle.tracking.model_io import fetch

source, model_uri, folder, label_type, proba_type = sys.argv[1:6]
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
df = spark.read.csv(source, header=True)
features = F.struct(*df.columns)
labels = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local", result_type=label_type)
verified, _ = fetch(model_uri, Path(folder))  # what the README shows: verified, then loaded
proba = mlflow.pyfunc.spark_udf(spark, str(verified), env_manager="local", params={"output": "probabilities"},
                                result_type=proba_type)
rows = df.select(labels(features).alias("label"), proba(features).alias("p")).select("label", "p.*").toPandas()
print(json.dumps(rows.to_dict("list")))
spark.stop()
"""


def test_spark_udf_on_the_registered_model_agrees_with_pandas_scoring(registered, tmp_path):
    source, store = registered
    script = tmp_path / "udf.py"
    script.write_text(SPARK_UDF)
    env = subprocess_env(store, tmp_path)
    env.update(PYTHONPATH=str(PROJECT_ROOT / "src"), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    model = mlflow.sklearn.load_model(f"models:/{NAME}/1")
    assert list(model.classes_) == ["benign", "malignant"]
    proba_type = "prediction string, probability_benign double, probability_malignant double"
    proc = subprocess.run([spark_python(), str(script), str(source), f"models:/{NAME}/1", str(tmp_path / "verified"),
                           "string", proba_type], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    frame = pd.read_csv(source).drop(columns=["target"])
    np.testing.assert_array_equal(got["label"], model.predict(frame))
    np.testing.assert_array_equal(got["prediction"], got["label"])
    np.testing.assert_array_equal(np.c_[got["probability_benign"], got["probability_malignant"]],
                                  model.predict_proba(frame))


def test_spark_engine_without_pyspark_says_how_to_get_it(tmp_path):
    if importlib.util.find_spec("pyspark") is not None:
        pytest.skip("pyspark is installed in this environment")
    proc = subprocess.run([sys.executable, "-m", "mlcycle", "predict", "--engine", "spark", "--input", "x.csv",
                           "--output", "y.parquet"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: the spark engine needs pyspark, which this environment lacks: run "
                                   "`make spark-venv`, then .venv-spark/bin/mlcycle predict --engine spark ...")


def test_spark_engine_without_java_says_how_to_get_it(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([spark_python(), "-m", "mlcycle", "predict", "--engine", "spark", "--input", "x.csv",
                           "--output", "y.parquet"], capture_output=True, text=True, timeout=300, cwd=work,
                          env={"PATH": "/nonexistent", "PYTHONPATH": str(PROJECT_ROOT / "src"), "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: the spark engine needs Java: sudo apt-get install -y default-jre-headless "
                                   "(or set JAVA_HOME)")
    assert list(work.iterdir()) == []  # no store, no run, no output
