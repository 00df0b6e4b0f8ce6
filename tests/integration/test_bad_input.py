"""Bad input through the real CLI: one clear line naming the problem, a non-zero exit, and no
MLflow run left RUNNING (or no run at all when the config itself is wrong)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import subprocess_env


def train(store, tmp_path, *overrides):
    cmd = [sys.executable, "-m", "mlcycle", "train", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(store, tmp_path), cwd=tmp_path, timeout=300)


def runs(store):
    client = MlflowClient(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


def assert_one_line_error(proc, *fragments, code=None):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    if code is not None:
        assert proc.returncode == code
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def good_frame(n=120):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "color": rng.choice(["red", "blue"], size=n), "label": np.tile(["a", "b"], n // 2)})


FAST = ["model=logistic_regression", "tune.n_trials=1", "tune.cv_folds=2", "evaluate.plots=false", "registry.enabled=false"]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("tune.n_trials=abc", ["tune.n_trials=abc", "could not be converted to Integer"]),
        ("tune.bogus=1", ["tune.bogus"]),
        ("model=nope", ["Could not find 'model/nope'", "available: auto, extra_trees, hist_gradient_boosting, logistic_regression, random_forest"]),
        ("data.split.train=0.9", ["sum to 1"]),
        # the default store is sqlite: the writer process needs a tracking server
        ("tune.trial_writer=process", ["tune.trial_writer=process needs a tracking server", "sqlite:///"]),
    ],
)
def test_bad_config_is_rejected_before_any_run(store, tmp_path, override, fragments):
    proc = train(store, tmp_path, override)
    assert_one_line_error(proc, *fragments, code=2)
    assert runs(store) == []


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["+typo=1"], ["unknown config key 'typo'"]),
        (["+tune.n_trial=3"], ["unknown config key 'tune.n_trial' (did you mean 'tune.n_trials'?)"]),
        (["model=logistic_regression", "model.classifier.params.max_iter=-5"],
         ["model.classifier.params: The 'max_iter' parameter of LogisticRegression must be an int in the range [0, inf). Got -5"]),
        (["+model.classifier.params.bogus=3"], ["model.classifier.params.bogus: LogisticRegression has no parameter 'bogus'"]),
        (["registry.model_name=../../x"], ["registry.model_name must be a registered model name", "got '../../x'"]),
        (["registry.champion_alias=latest"], ["registry.champion_alias must be an alias", "got 'latest'"]),
        # Hydra would write the composed config there, passwords included
        (["hydra.output_subdir=.hydra"], ["hydra.output_subdir=.hydra: Hydra would write the config there unmasked"]),
    ],
)
def test_config_mistakes_are_refused_before_any_run_or_folder(store, tmp_path, overrides, fragments):
    proc = train(store, tmp_path, *FAST, "data.n_rows=500", *overrides)  # a tiny run but for the mistake
    assert_one_line_error(proc, *fragments, code=2)
    assert runs(store) == []
    assert not (tmp_path / "outputs").exists()  # Hydra's run directory was never made


def test_a_multirun_with_a_bad_estimator_parameter_creates_no_run(store, tmp_path):
    proc = train(store, tmp_path, "-m", "seed=1,2", *FAST, "data.n_rows=500", "model.classifier.params.max_iter=-5")
    assert_one_line_error(proc, "The 'max_iter' parameter of LogisticRegression", code=2)
    assert runs(store) == []


def test_missing_file(store, tmp_path):
    proc = train(store, tmp_path, "data=csv", "data.path=nowhere.csv", "data.target=y")
    assert_one_line_error(proc, "data file not found", str(tmp_path / "nowhere.csv"), code=2)
    assert runs(store) == []


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ["data file is empty", "bad.csv"]),
        (bytes(range(256)) * 50, ["cannot read", "bad.csv"]),
    ],
)
def test_unreadable_or_empty_file(store, tmp_path, content, fragments):
    (tmp_path / "bad.csv").write_bytes(content)
    proc = train(store, tmp_path, "data=csv", "data.path=bad.csv", "data.target=y", *FAST)
    assert_one_line_error(proc, "[stage ingest]", *fragments, code=2)
    assert_nothing_running_and_root_failed(store, fragments[0])


def assert_nothing_running_and_root_failed(store, fragment):
    all_runs = runs(store)
    assert all(r.info.status != "RUNNING" for r in all_runs)
    roots = [r for r in all_runs if r.data.tags.get("mlcycle.run_kind") == "pipeline"]
    assert len(roots) == 1 and roots[0].info.status == "FAILED"
    assert fragment in roots[0].data.tags["mlcycle.error"]


def test_target_column_absent_lists_columns(store, tmp_path):
    path = csv(tmp_path, good_frame())
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=purchased", *FAST)
    assert_one_line_error(proc, "target column 'purchased' not found", "columns are: x, color, label", str(path), code=2)
    assert_nothing_running_and_root_failed(store, "purchased")


def test_single_class_target(store, tmp_path):
    path = csv(tmp_path, good_frame().assign(label="a"))
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", "data.task=binary", *FAST)
    assert_one_line_error(proc, "single class ('a')", code=2)
    assert_nothing_running_and_root_failed(store, "single class")


def test_numeric_garbage_beyond_tolerance(store, tmp_path):
    frame = good_frame()
    frame["x"] = frame["x"].astype(object)
    frame.loc[:9, "x"] = "??"
    path = csv(tmp_path, frame)
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", *FAST)
    assert_one_line_error(proc, "numeric column 'x' has 8.3% non-numeric values", "'??'", code=2)
    assert_nothing_running_and_root_failed(store, "non-numeric")


def test_a_good_csv_with_strings_missing_values_and_string_target_trains(store, tmp_path):
    frame = good_frame(200)
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "color"] = None
    path = csv(tmp_path, frame)
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", *FAST)
    assert proc.returncode == 0, proc.stderr
    roots = [r for r in runs(store) if r.data.tags.get("mlcycle.run_kind") == "pipeline"]
    assert len(roots) == 1 and roots[0].info.status == "FINISHED"
    assert roots[0].data.tags["mlcycle.data_source"] == str(path)


def _all_missing_target(frame):
    return frame.assign(label=np.nan)


def _all_infinite_column(frame):
    return frame.assign(z=np.where(np.arange(len(frame)) % 2, np.inf, -np.inf))


@pytest.mark.parametrize(
    ("spoil", "fragments"),
    [
        (_all_missing_target, ["target column 'label' is entirely empty"]),
        (_all_infinite_column, ["column 'z' is entirely empty: every value is ±inf or missing", "data.drop_columns"]),
    ],
)
def test_empty_target_or_infinite_column_is_named(store, tmp_path, spoil, fragments):
    path = csv(tmp_path, spoil(good_frame()))
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", *FAST)
    assert_one_line_error(proc, "[stage ingest]", str(path), *fragments, code=2)
    assert_nothing_running_and_root_failed(store, fragments[0])


def test_duplicate_column_names_are_refused(store, tmp_path):
    path = tmp_path / "data.csv"
    good_frame().rename(columns={"color": "x"}).to_csv(path, index=False)  # header: x,x,label
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", *FAST)
    assert_one_line_error(proc, "[stage ingest]", f"{path}: duplicate column name(s) 'x' (2 times)", code=2)
    assert_nothing_running_and_root_failed(store, "duplicate column")


def test_infinite_cells_are_imputed_even_without_clipping(store, tmp_path):
    frame = good_frame(200)
    frame.loc[::3, "x"] = np.inf
    frame.loc[1::7, "x"] = -np.inf
    path = csv(tmp_path, frame)
    proc = train(store, tmp_path, "data=csv", f"data.path={path}", "data.target=label", "preprocess.clip=none", *FAST)
    assert proc.returncode == 0, proc.stderr
    pre = [r for r in runs(store) if r.info.run_name == "preprocess"]
    assert len(pre) == 1 and pre[0].data.metrics["infinite_values"] > 0
