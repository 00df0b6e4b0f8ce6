"""The full pipeline on a tiny config against a private sqlite store: the run tree, what each
run logged, the registered model, and that the registry's copy predicts like the in-memory one."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.config.schema import STAGES

CLASSIFICATION_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss"}


def children(client, run):
    runs = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'", max_results=1000
    )
    return sorted(runs, key=lambda r: r.info.start_time)


@pytest.fixture
def finished(tiny_cfg):
    cfg = tiny_cfg()
    result = pipeline.run(cfg)
    return cfg, result, MlflowClient()


def test_run_tree_has_one_child_per_stage_and_trials_under_tune(finished):
    cfg, result, client = finished
    root = client.get_run(result.run_id)
    assert root.info.status == "FINISHED"
    stages = children(client, root)
    assert [r.info.run_name for r in stages] == list(STAGES)
    assert all(r.info.status == "FINISHED" for r in stages)
    tune = next(r for r in stages if r.info.run_name == "tune")
    trials = children(client, tune)
    assert len(trials) == cfg.tune.n_trials
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert "C" in trial.data.params and "class_weight" in trial.data.params
        assert "cv_roc_auc" in trial.data.metrics
        assert trial.data.tags["mlcycle.run_kind"] == "trial"
    # nothing else in the experiment: no ghost or stray runs
    everything = client.search_runs([root.info.experiment_id], max_results=1000)
    assert len(everything) == 1 + len(STAGES) + cfg.tune.n_trials


def test_root_run_logs_config_lineage_and_headline_metrics(finished):
    cfg, result, client = finished
    root = client.get_run(result.run_id)
    params, tags, metrics = root.data.params, root.data.tags, root.data.metrics
    assert params["model.name"] == "logistic_regression"
    assert params["tune.n_trials"] == "3"
    assert params["data.n_rows"] == "600"
    assert tags["mlcycle.data_name"] == "ecommerce"
    assert len(tags["mlcycle.data_digest"]) == 16
    assert tags["mlcycle.git_commit"]
    assert tags["mlcycle.git_dirty"] in ("true", "false", "unknown")
    assert tags["mlcycle.mlcycle_version"]
    assert tags["mlcycle.registered_model"] == "mlcycle-ecommerce"
    assert tags["mlcycle.registered_version"] == "1"
    assert {f"test_{m}" for m in CLASSIFICATION_METRICS} <= set(metrics)
    assert metrics["cv_roc_auc"] == pytest.approx(result.state.cv_score)
    assert metrics["test_roc_auc"] == pytest.approx(result.state.test_metrics["roc_auc"])
    assert 0.5 < metrics["test_roc_auc"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(root.info.run_id)}
    assert "config.yaml" in artifacts
    # the UI: a short name, stage times named to sort after the headline metrics, a description
    assert root.info.run_name == "lr-ecommerce"
    assert {f"time_{s}_seconds" for s in STAGES} <= set(metrics)
    assert not [k for k in metrics if k.startswith("duration")]
    assert max(k for k in metrics if k.startswith(("cv_", "test_"))) < min(k for k in metrics if k.startswith("time_"))
    note = tags["mlflow.note.content"].splitlines()
    experiment, splits = root.info.experiment_id, result.state.splits
    rows = len(splits.train) + len(splits.validation) + len(splits.test)
    assert note == [
        f"- **logistic_regression** on **ecommerce** · {rows:,} rows"
        f" · test roc_auc **{metrics['test_roc_auc']:.4f}** · cv roc_auc {metrics['cv_roc_auc']:.4f}",
        "- registered [mlcycle-ecommerce v1](#/models/mlcycle-ecommerce/versions/1?workflowType=machine_learning) "
        f"(challenger, champion): **promoted**: {result.state.gate_summary}",
        "- test: " + " · ".join(f"{k} {v:.4f}" for k, v in result.state.test_metrics.items() if k != "roc_auc"),
        f"- report: [report.html](#/experiments/{experiment}/runs/{root.info.run_id}/artifacts/report.html"
        "?workflowType=machine_learning) · stage times: metrics `time_<stage>_seconds`",
    ]
    config = yaml.safe_load(mlflow.artifacts.load_text(f"{root.info.artifact_uri}/config.yaml"))
    assert config["model"]["name"] == "logistic_regression"


def test_stage_runs_log_what_they_did(finished):
    _, result, client = finished
    stages = {r.info.run_name: r for r in children(client, client.get_run(result.run_id))}

    ingest = stages["ingest"]
    m = ingest.data.metrics
    assert m["rows_in"] == 600
    assert m["rows_train"] + m["rows_validation"] + m["rows_test"] == m["rows_out"]
    contexts = {i.dataset.name: [t.value for t in i.tags if t.key == "mlflow.data.context"][0] for i in ingest.inputs.dataset_inputs}
    assert contexts == {"ecommerce-train": "training", "ecommerce-validation": "validation", "ecommerce-test": "test"}
    profile = mlflow.artifacts.load_dict(f"{ingest.info.artifact_uri}/data_profile.json")
    assert set(profile["splits"]) == {"train", "validation", "test"}
    assert profile["splits"]["train"]["rows"] == m["rows_train"]
    stored = {a.path for a in client.list_artifacts(ingest.info.run_id, "splits")}
    assert stored == {"splits/train.parquet", "splits/validation.parquet", "splits/test.parquet"}
    train_copy = pd.read_parquet(mlflow.artifacts.download_artifacts(f"{ingest.info.artifact_uri}/splits/train.parquet"))
    def normalized(frame):  # Parquet gives text columns pandas' str dtype (missing = NaN)
        return frame.astype(object).where(frame.notna(), None)

    pd.testing.assert_frame_equal(normalized(train_copy), normalized(result.state.splits.train))

    pre = stages["preprocess"].data.metrics
    assert pre["duplicates_removed_train"] > 0  # the generator ships duplicated rows
    assert pre["imputed_cells"] > 0  # ... and missing cells
    assert pre["rows_out"] == pre["rows_in"] - pre["duplicates_removed_train"] - pre["duplicates_removed_validation"] - pre["anomalies_removed"]

    feats = stages["features"]
    assert feats.data.metrics["features_out"] > feats.data.metrics["features_in"]
    assert "product_category" in feats.data.params["high_cardinality_columns"]

    tune = stages["tune"].data
    assert tune.metrics["trials_complete"] == 3
    assert "best.C" in tune.params

    evaluate = stages["evaluate"]
    assert {f"test_{m}" for m in CLASSIFICATION_METRICS} <= set(evaluate.data.metrics)
    plots = {a.path for a in client.list_artifacts(evaluate.info.run_id, "plots")}
    assert plots == {f"plots/{p}" for p in ("confusion_matrix.png", "roc_curve.png", "precision_recall_curve.png", "calibration_curve.png")}
    for stage in stages.values():
        assert stage.data.metrics["time_seconds"] >= 0 and "duration_seconds" not in stage.data.metrics


def test_registered_model_predicts_like_the_in_memory_pipeline(finished):
    cfg, result, client = finished
    state = result.state
    version = client.get_model_version_by_alias("mlcycle-ecommerce", "challenger")
    assert str(version.version) == "1"
    assert str(client.get_model_version_by_alias("mlcycle-ecommerce", "champion").version) == "1"
    assert version.tags["root_run_id"] == result.run_id
    assert version.tags["data_digest"] == state.data_digest
    assert float(version.tags["test_roc_auc"]) == pytest.approx(state.test_metrics["roc_auc"], rel=1e-5)

    X = state.splits.test[list(state.schema.features)]
    loaded = mlflow.sklearn.load_model("models:/mlcycle-ecommerce@challenger")
    np.testing.assert_array_equal(loaded.predict(X), state.model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), state.model.predict_proba(X))
    pyfunc = mlflow.pyfunc.load_model("models:/mlcycle-ecommerce@challenger")
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(X)), state.model.predict(X))


def test_second_run_becomes_challenger_and_champion_only_through_the_gate(tiny_cfg):
    pipeline.run(tiny_cfg())
    second = pipeline.run(tiny_cfg("seed=7"))
    client = MlflowClient()
    assert second.state.registered_version == "2"
    assert str(client.get_model_version_by_alias("mlcycle-ecommerce", "challenger").version) == "2"
    champion = str(client.get_model_version_by_alias("mlcycle-ecommerce", "champion").version)
    assert champion == ("2" if second.state.promoted else "1")
    assert client.get_model_version("mlcycle-ecommerce", "2").tags["mlcycle.gate"] == ("passed" if second.state.promoted else "failed")


def test_same_config_and_seed_give_identical_test_metrics(tiny_cfg):
    first = pipeline.run(tiny_cfg("registry.enabled=false"))
    second = pipeline.run(tiny_cfg("registry.enabled=false"))
    assert first.run_id != second.run_id
    assert first.state.test_metrics == second.state.test_metrics
    assert first.state.best_params == second.state.best_params


@pytest.mark.parametrize(
    ("data", "task_metric"),
    [("breast_cancer", "test_roc_auc"), ("wine", "test_roc_auc"), ("diabetes", "test_rmse")],
)
def test_bundled_datasets_run_end_to_end(tiny_cfg, data, task_metric):
    result = pipeline.run(tiny_cfg(f"data={data}", "registry.enabled=false", "evaluate.plots=false"))
    root = MlflowClient().get_run(result.run_id)
    assert root.info.status == "FINISHED"
    assert task_metric in root.data.metrics


def test_time_column_gives_a_time_ordered_split_and_time_series_cv(tiny_cfg):
    result = pipeline.run(tiny_cfg("data.time_column=session_date", "registry.enabled=false", "evaluate.plots=false"))
    splits = result.state.splits
    assert splits.train["session_date"].max() <= splits.validation["session_date"].min()
    assert splits.validation["session_date"].max() <= splits.test["session_date"].min()
    ingest = next(r for r in children(MlflowClient(), MlflowClient().get_run(result.run_id)) if r.info.run_name == "ingest")
    assert ingest.data.params["split_kind"] == "time"


def test_a_failing_stage_marks_stage_and_root_failed_with_the_error(tiny_cfg):
    cfg = tiny_cfg("+model.classifier.params.dual=true")  # valid alone; every trial's fit raises (lbfgs)
    with pytest.raises(RuntimeError, match="tuning trials failed"):
        pipeline.run(cfg)
    client = MlflowClient()
    roots = client.search_runs(
        [client.get_experiment_by_name("mlcycle").experiment_id], filter_string="tags.`mlcycle.run_kind` = 'pipeline'"
    )
    assert len(roots) == 1
    root = roots[0]
    assert root.info.status == "FAILED"
    assert "tuning trials failed" in root.data.tags["mlcycle.error"]
    stages = {r.info.run_name: r for r in children(client, root)}
    assert list(stages) == ["ingest", "preprocess", "features", "tune"]
    assert stages["tune"].info.status == "FAILED"
    assert stages["ingest"].info.status == "FINISHED"
    trials = children(client, stages["tune"])
    assert len(trials) == 3 and all(t.info.status == "FAILED" for t in trials)
    assert all("dual=False" in t.data.tags["mlcycle.error"] for t in trials)
    running = client.search_runs([root.info.experiment_id], filter_string="attributes.status = 'RUNNING'")
    assert running == []
    # the run page says what happened and what is known
    note = root.data.tags["mlflow.note.content"].splitlines()
    assert note[0].startswith("- **FAILED** in stage `tune`: all 3 tuning trials failed")
    assert note[1].startswith("- **logistic_regression** on **ecommerce** · ") and "test" not in note[1]
    assert note[2].startswith(f"- report: [report.html](#/experiments/{root.info.experiment_id}/runs/{root.info.run_id}/")
    assert {f"time_{s}_seconds" for s in ("ingest", "preprocess", "features")} == {
        k for k in root.data.metrics if k.startswith("time_")}
