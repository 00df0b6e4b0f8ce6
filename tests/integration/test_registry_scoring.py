"""`mlcycle predict` (batch scoring) round trip and bad inputs, and safe model loading: no
pickle, mlcycle's own skops allowlist."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.cli import main
from mlcycle.config.load import source_checkout
from mlcycle.tracking import model_io
from tests.integration.registry_helpers import NAME


@pytest.fixture
def trained(tiny_cfg):
    return pipeline.run(tiny_cfg("evaluate.plots=false"))


def predict_runs(client):
    exp = client.get_experiment_by_name("mlcycle")
    return client.search_runs([exp.experiment_id], filter_string="tags.`mlcycle.run_kind` = 'predict'")


def test_batch_scoring_round_trip_equals_in_process_predictions(trained, tmp_path, capsys):
    state = trained.state
    frame = state.splits.test.copy()
    frame.insert(0, "row_id", range(len(frame)))
    source = tmp_path / "batch.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "scored.parquet"

    assert main(["predict", "--input", str(source), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"scored {len(frame)} of {len(frame)} rows" in printed
    # columns the model does not use (an id, the label) are ignored, kept and reported
    ignored = ["row_id", state.schema.target]
    assert f"ignored 2 column(s) the model does not use (kept in the output): {', '.join(ignored)}" in printed
    scored = pd.read_parquet(out)
    X = state.splits.test[list(state.schema.features)]
    assert scored["row_id"].tolist() == list(range(len(frame)))
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), state.model.predict(X))
    proba = state.model.predict_proba(X)
    for i, cls in enumerate(state.model.classes_):
        np.testing.assert_allclose(scored[f"probability_{cls}"].to_numpy(), proba[:, i], rtol=1e-9)

    client = MlflowClient()
    (run,) = predict_runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rows_in"] == len(frame)
    assert run.data.metrics["rows_scored"] == len(frame)
    assert run.data.metrics["rows_rejected"] == 0
    assert run.data.params["scoring.model_uri"] == f"models:/{NAME}@champion"
    assert run.data.tags["mlcycle.model_version"] == "1"
    assert json.loads(run.data.params["scoring.ignored_columns"]) == ignored
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "batch.csv"
    assert [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"] == ["scoring"]

    # any model URI works, and CSV output too
    csv_out = tmp_path / "scored.csv"
    assert main(["predict", "--input", str(source), "--output", str(csv_out), "--model-uri", f"models:/{NAME}/1"]) == 0
    np.testing.assert_array_equal(pd.read_csv(csv_out)["prediction"].to_numpy(), state.model.predict(X))


def test_bad_batch_inputs_are_reported_by_row_or_fail_in_one_line(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # elsewhere than the checkout: `make -C <checkout> ui`
    state = trained.state
    frame = state.splits.test.head(20).astype(object)
    frame.loc[2, "price"] = "abc"  # row 3
    frame.loc[6, "session_date"] = "yesterday"  # row 7
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    out = tmp_path / "out.csv"
    client = MlflowClient()

    assert main(["predict", "--input", str(bad), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scored 18 of 20 rows" in text
    assert ("rejected 2 row(s): row 3: column 'price': 'abc' is not a valid double; "
            "row 7: column 'session_date': 'yesterday' is not a valid datetime") in text
    assert len(pd.read_csv(out)) == 18
    run = predict_runs(client)[0]
    lines = text.splitlines()
    assert f"  all rejected rows: artifact scoring/rejected_rows.csv on run {run.info.run_id}" in lines
    assert lines[-1] == (f"scoring run {run.info.run_id}; browse: make -C {source_checkout()} ui, then http://127.0.0.1:5000/"
                         f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning")
    assert run.data.metrics["time_seconds"] > 0
    assert (run.data.metrics["rows_rejected"], run.data.metrics["rows_scored"]) == (2, 18)
    rejected = pd.read_csv(mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/scoring/rejected_rows.csv"))
    assert rejected[["row", "column", "value"]].to_dict("list") == {"row": [3, 7], "column": ["price", "session_date"], "value": ["abc", "yesterday"]}

    strict_out = tmp_path / "strict.csv"
    assert main(["predict", "--input", str(bad), "--output", str(strict_out), "--on-bad-rows", "fail"]) == 2
    err = capsys.readouterr().err.strip()
    strict = predict_runs(client)[0]
    assert err == (f"error: {bad}: 2 row(s) with bad values: row 3: column 'price': 'abc' is not a valid double; "
                   "row 7: column 'session_date': 'yesterday' is not a valid datetime "
                   f"(all of them: artifact scoring/rejected_rows.csv on run {strict.info.run_id})")
    assert not strict_out.exists()

    missing = tmp_path / "missing.csv"
    state.splits.test.drop(columns=["price", "channel"]).to_csv(missing, index=False)
    assert main(["predict", "--input", str(missing), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {missing}: missing required column(s) price, channel; the model needs ")
    assert err.count("\n") == 0

    assert main(["predict", "--input", str(tmp_path / "nope.csv"), "--output", str(out)]) == 2
    assert "data file not found" in capsys.readouterr().err
    assert main(["predict", "--input", str(bad), "--output", str(tmp_path / "out.xlsx")]) == 2
    assert "--output must end in .csv or .parquet" in capsys.readouterr().err
    assert main(["predict", "--input", str(bad), "--output", str(out), "--model-uri", f"models:/{NAME}/9"]) == 2
    assert f"cannot load model models:/{NAME}/9" in capsys.readouterr().err

    runs = predict_runs(client)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 4 and all(r.data.tags["mlcycle.error"] for r in failed)
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)  # none left RUNNING


def _boom(*args, **kwargs):
    raise AssertionError("pickle used while loading a model")


def test_loading_the_registered_model_never_unpickles(trained, monkeypatch, tmp_path):
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "download")))
    assert not list(local.rglob("*.pkl")) and [p.name for p in local.rglob("*.skops")] == ["model.skops"]
    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", _boom)
        monkeypatch.setattr(module, "loads", _boom)
    X = trained.state.splits.test[list(trained.state.schema.features)]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")  # what `mlflow models serve` does
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(X)), trained.state.model.predict(X))
    loaded = model_io.load_model(f"models:/{NAME}@champion")
    np.testing.assert_array_equal(loaded.model.predict(X), trained.state.model.predict(X))
    assert (loaded.name, loaded.version, loaded.target) == (NAME, "1", "purchased")


def test_unsafe_models_are_refused(trained, tmp_path):
    import os

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    source = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "source")))
    model = trained.state.model

    # the model's own files cannot widen what is trusted: a type outside mlcycle's list is refused
    smuggled = Path(shutil.copytree(source, tmp_path / "smuggled"))
    model.steps.insert(0, ("hook", FunctionTransformer(os.getcwd)))
    try:
        skops.io.dump(model, next(smuggled.rglob("model.skops")))
    finally:
        model.steps.pop(0)
    with pytest.raises(model_io.ModelLoadError, match="cannot load model .* with skops: .*getcwd"):
        model_io.load_model(str(smuggled))

    # a model in the format mlcycle logged before input contracts (the sklearn flavor), whose
    # MLmodel asks to trust more: refused
    widened = tmp_path / "widened"
    mlflow.sklearn.save_model(model, str(widened), serialization_format="skops",
                              skops_trusted_types=[*model_io.TRUSTED_TYPES, "builtins.exec"])
    with pytest.raises(model_io.ModelLoadError, match=r"asks to trust types mlcycle does not trust: \['builtins.exec'\]"):
        model_io.load_model(str(widened))

    pickled = tmp_path / "pickled"
    mlflow.sklearn.save_model(model, str(pickled), serialization_format="pickle")
    with pytest.raises(model_io.ModelLoadError, match="serialized with pickle; mlcycle loads only skops"):
        model_io.load_model(str(pickled))


def test_a_model_saved_before_the_transformers_moved_to_mlcycle_core_still_loads(trained, tmp_path):
    """Models registered by an earlier mlcycle are in the sklearn flavor's layout and name its
    transformers mlcycle.cleaning.* and mlcycle.features.*: the one safe loader still loads
    them, and they predict the same."""
    import io
    import zipfile

    old = tmp_path / "old"
    mlflow.sklearn.save_model(trained.state.model, str(old), serialization_format="skops",
                              skops_trusted_types=model_io.TRUSTED_TYPES)
    with zipfile.ZipFile(old / "model.skops") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    schema = entries["schema.json"].decode()
    assert '"mlcycle.core.cleaning"' in schema and '"mlcycle.core.features"' in schema
    entries["schema.json"] = (
        schema.replace('"mlcycle.core.cleaning"', '"mlcycle.cleaning"').replace('"mlcycle.core.features"', '"mlcycle.features"')
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    (old / "model.skops").write_bytes(buffer.getvalue())
    meta = yaml.safe_load((old / "MLmodel").read_text())
    flavor = meta["flavors"]["sklearn"]
    flavor["skops_trusted_types"] = [t.replace("mlcycle.core.", "mlcycle.") for t in flavor["skops_trusted_types"]]
    (old / "MLmodel").write_text(yaml.safe_dump(meta))

    loaded = model_io.load_model(str(old))
    X = trained.state.splits.test[list(trained.state.schema.features)]
    np.testing.assert_array_equal(loaded.model.predict(X), trained.state.model.predict(X))
    np.testing.assert_allclose(loaded.model.predict_proba(X), trained.state.model.predict_proba(X), rtol=1e-12)
