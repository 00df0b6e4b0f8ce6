"""A registered model cannot be swapped behind its users' back (issue 14): every mlcycle path
that loads it checks its files against the manifest stored with the version in the tracking
database, before reading any of them; loading never writes beside the artifacts; the step
cache refuses stored outputs that changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import skops.io
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mlcycle import pipeline
from mlcycle.cli import main
from mlcycle.core.modeling import full_pipeline
from mlcycle.tracking import model_io
from tests.conftest import subprocess_env
from tests.integration.registry_helpers import NAME
from tests.integration.runs import CACHED, cache_status, stage_runs


@pytest.fixture
def registered(tiny_cfg, tmp_path):
    """A registered champion and the folder that holds its artifacts (the local artifact store)."""
    result = pipeline.run(tiny_cfg("evaluate.plots=false"))
    client = MlflowClient()
    model_id = client.get_model_version(NAME, result.state.registered_version).source.removeprefix("models:/")
    folder = Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    assert (folder / "MLmodel").is_file()
    return result, folder


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_loading_writes_nothing_beside_the_artifacts(registered, tmp_path):
    """So a read-only (or full) artifact store serves models all the same."""
    result, _ = registered
    store = Path(os.environ["MLCYCLE_ROOT"]) / "mlartifacts"
    before = snapshot(store)
    loaded = model_io.load_model(f"models:/{NAME}@champion")
    X = result.state.splits.test[list(result.state.schema.features)]
    assert (loaded.model.predict(X) == result.state.model.predict(X)).all()
    frame = result.state.splits.test.copy()
    frame.to_csv(tmp_path / "batch.csv", index=False)
    assert main(["predict", "--input", str(tmp_path / "batch.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    assert snapshot(store) == before  # nothing written beside the artifacts (no registered_model_meta)


def test_a_model_file_swapped_for_another_trusted_model_is_refused(registered, tmp_path, capsys):
    result, folder = registered
    state = result.state
    other = full_pipeline(state.preprocessor, LogisticRegression(C=0.001, max_iter=50))
    other.fit(state.train[list(state.schema.features)], state.train[state.schema.target])
    skops.io.dump(other, folder / "data" / "pipeline" / "model.skops")  # only trusted types: skops would load it

    with pytest.raises(model_io.ModelIntegrityError, match=r"changed data/pipeline/model\.skops"):
        model_io.load_model(f"models:/{NAME}@champion")
    state.splits.test.to_csv(tmp_path / "batch.csv", index=False)
    assert main(["predict", "--input", str(tmp_path / "batch.csv"), "--output", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ from the manifest recorded when version 1 was registered" in err[0]
    assert not (tmp_path / "out.csv").exists()


def test_tampered_code_never_runs_and_an_added_file_is_refused(registered, tmp_path):
    result, folder = registered
    tripwire = tmp_path / "TRIPWIRE"
    init = folder / "code" / "mlcycle" / "__init__.py"
    init.write_text(init.read_text() + f"\nopen({str(tripwire)!r}, 'w').close()\n")
    env = subprocess_env(os.environ["MLFLOW_TRACKING_URI"], Path(os.environ["MLCYCLE_ROOT"]))
    done = subprocess.run([sys.executable, "-m", "mlcycle", "serve", "--port", "5099"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "changed code/mlcycle/__init__.py" in done.stderr and "refusing to load it" in done.stderr
    assert not tripwire.exists()  # the server never started, so the code never ran

    init.write_text(init.read_text().replace(f"\nopen({str(tripwire)!r}, 'w').close()\n", ""))
    model_io.load_model(f"models:/{NAME}@champion")  # restored: loads again
    (folder / "data" / "pipeline" / "extra.py").write_text("print('hello')\n")
    with pytest.raises(model_io.ModelIntegrityError, match=r"added data/pipeline/extra\.py"):
        model_io.load_model(f"models:/{NAME}@champion")
    (folder / "data" / "pipeline" / "extra.py").unlink()
    (folder / "input_example.json").unlink()
    with pytest.raises(model_io.ModelIntegrityError, match=r"missing input_example\.json"):
        model_io.load_model(f"models:/{NAME}@champion")


def test_a_changed_stored_output_is_not_reused_by_the_step_cache(tiny_cfg):
    client = MlflowClient()
    first = pipeline.run(tiny_cfg(*CACHED))
    train_run = stage_runs(client, first.run_id)["train"]
    cached = Path(train_run.info.artifact_uri.removeprefix("file://")) / "cache" / "model.skops"
    state = first.state
    other = full_pipeline(state.preprocessor, LogisticRegression(C=0.001, max_iter=50))
    other.fit(state.train[list(state.schema.features)], state.train[state.schema.target])
    skops.io.dump(other, cached)

    second = pipeline.run(tiny_cfg(*CACHED))
    status = cache_status(client, second.run_id)
    assert status["tune"] == "hit" and status["train"] == "miss"  # ran again instead of reusing the swap
    reason = stage_runs(client, second.run_id)["train"].data.tags["mlcycle.cache_reason"]
    assert "differ from their manifest" in reason and "changed cache/model.skops" in reason
    assert second.state.test_metrics == first.state.test_metrics
