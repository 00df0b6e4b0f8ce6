"""An objective that scores NaN or inf on every trial (issue 15), from real data rather
than a patched objective:

* NaN: roc_auc is undefined on a fold holding one class. Time-ordered folds
  (``data.time_column``) of rows whose later part holds one class give exactly that;
* inf: rmse overflows when the target is ~1e200 (its square is beyond float64).

Optuna marks every trial FAIL (no traceback), every trial is a FAILED child run naming the
fold, the command ends with one line and exit 2, and no run is left RUNNING.
"""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.integration.test_bad_input import assert_one_line_error, runs, train


def one_class_later(n=200) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    label = np.array(["a"] * n, dtype=object)
    label[:40:2] = "b"  # both classes early (the folds' training parts), one class in the rest of train
    label[120::2] = "b"
    frame = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                          "x": rng.normal(size=n), "label": label})
    return frame, ["data.target=label", "data.time_column=day"]


def huge_target(n=200) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "c": rng.choice(["p", "q"], n), "y": (x + rng.normal(size=n)) * 1e200}), ["data.target=y"]


@pytest.mark.parametrize(("make", "reason"), [(one_class_later, "roc_auc = nan on CV fold 1 of 2"),
                                              (huge_target, "rmse = inf on CV fold 1 of 2")])
def test_every_trial_scoring_nan_or_inf_fails_cleanly(store, tmp_path, make, reason):
    frame, overrides = make()
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    study_db = tmp_path / "study.db"
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", *overrides, "model=logistic_regression",
                 "tune.n_trials=3", "tune.cv_folds=2", f"tune.storage=sqlite:///{study_db}", "evaluate.plots=false",
                 "registry.enabled=false")
    assert_one_line_error(proc, "[stage tune]", f"all 3 tuning trials failed; first error: {reason}", code=2)

    (study,) = optuna.get_all_study_summaries(f"sqlite:///{study_db}")
    trials = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{study_db}").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 3

    all_runs = runs(store)
    assert all(r.info.status != "RUNNING" for r in all_runs)
    by_kind = {}
    for r in all_runs:
        by_kind.setdefault(r.data.tags.get("mlcycle.run_kind"), []).append(r)
    (root,) = by_kind["pipeline"]
    assert root.info.status == "FAILED" and reason in root.data.tags["mlcycle.error"]
    (tune,) = [r for r in all_runs if r.info.run_name == "tune"]
    assert tune.info.status == "FAILED"
    client = MlflowClient(store)
    trial_runs = client.search_runs([tune.info.experiment_id], f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    assert sorted(int(r.data.tags["mlcycle.trial_number"]) for r in trial_runs) == [0, 1, 2]
    for r in trial_runs:
        assert r.info.status == "FAILED" and r.data.tags["mlcycle.trial_state"] == "FAIL"
        assert r.data.tags["mlcycle.error"].startswith(reason.split(" = ")[0])
        assert "on CV fold 1 of 2" in r.data.tags["mlcycle.error"]
