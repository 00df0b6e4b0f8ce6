"""±inf in numeric cells (issue 15): a missing value. The model's own cleaner imputes it and
the preprocess stage counts it, so training does not crash in scikit-learn; scoring does the
same (``mlflow.pyfunc.load_model`` of the registered version, ``mlcycle predict`` on a CSV
holding ``inf``). A column holding nothing else is refused at ingest like an empty one
(tests/integration/test_bad_input.py)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.cli import main
from mlcycle.core.datasets import generate_sessions
from tests.integration.runs import stage_runs

INFINITE = ("price", "tenure_days")


def sessions_with_infinities(folder):
    frame = generate_sessions(600, 0, 0.0)
    rng = np.random.default_rng(3)
    for column in INFINITE:
        rows = rng.choice(len(frame), 30, replace=False)
        frame.loc[rows, column] = rng.choice([np.inf, -np.inf], 30)
    path = folder / "sessions.csv"
    frame.to_csv(path, index=False)  # written as inf / -inf, read back as floats
    return path


def test_infinite_cells_are_imputed_counted_and_scored_like_missing_ones(tiny_cfg, tmp_path, capsys):
    path = sessions_with_infinities(tmp_path)
    result = pipeline.run(tiny_cfg("data.source=file", f"data.path={path}", "data.name=infinite", "evaluate.plots=false"))
    state = result.state
    assert state.registered_version == "1"

    pre = stage_runs(MlflowClient(), result.run_id)["preprocess"].data.metrics
    on_train = int(np.isinf(state.train[list(INFINITE)].to_numpy()).sum())  # rows the cleaner reports on
    assert pre["infinite_values"] == on_train > 0
    assert pre["imputed_cells"] >= on_train

    served = mlflow.pyfunc.load_model(f"models:/mlcycle-infinite/{state.registered_version}")
    rows = state.splits.test[list(state.schema.features)].head(6).reset_index(drop=True)
    with_inf, with_nan = rows.copy(), rows.copy()
    with_inf["price"] = [np.inf, -np.inf] * 3
    with_nan["price"] = np.nan
    expected = np.asarray(served.predict(with_nan))
    np.testing.assert_array_equal(np.asarray(served.predict(with_inf)), expected)
    np.testing.assert_array_equal(state.model.predict(with_inf), expected)

    batch, scored = tmp_path / "batch.csv", tmp_path / "scored.csv"
    with_inf.to_csv(batch, index=False)
    assert "inf" in batch.read_text()
    assert main(["predict", "--input", str(batch), "--output", str(scored), "--model-uri", "models:/mlcycle-infinite/1"]) == 0
    assert "scored 6 of 6 rows" in capsys.readouterr().out
    np.testing.assert_array_equal(pd.read_csv(scored)["prediction"].to_numpy(), expected)
