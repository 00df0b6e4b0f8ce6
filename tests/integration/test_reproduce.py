"""Lineage and ``mlcycle reproduce`` on real runs against a private sqlite store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import sklearn
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.commands import reproduce
from mlcycle.config.load import from_resolved
from mlcycle.core.evaluation import CLASSIFICATION_METRICS
from mlcycle.tracking import lineage
from tests.integration.runs import cache_status

QUICK = ["evaluate.plots=false"]


def roots(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("mlcycle")
    return client.search_runs(
        [experiment.experiment_id], "tags.`mlcycle.run_kind` = 'pipeline'", order_by=["attributes.start_time ASC"]
    )


def test_every_registered_version_traces_back_to_its_lineage(tiny_cfg, capsys):
    cfg = tiny_cfg(*QUICK)
    result = pipeline.run(cfg)
    client = MlflowClient()

    lin = lineage.trace(client, "models:/mlcycle-ecommerce/1")
    assert lin.root_run_id == result.run_id
    assert lin.model == "mlcycle-ecommerce/1"
    # resolved config, keys in their order (the order of derived features is column order)
    assert from_resolved(lin.config) == cfg
    assert list(lin.config["data"]["derived_features"]) == list(cfg.data.derived_features)
    assert list(lin.config["model"]["classifier"]["search_space"]) == ["C", "class_weight"]
    assert lin.seed == 42
    # dataset source and digest, code version, environment
    assert lin.data_source == "generator:ecommerce?n_rows=600&seed=42&drift=0.0"
    assert lin.data_digest == result.state.data_digest
    assert lin.git_commit == result.state.lineage["git_commit"]
    assert lin.source_digest == lineage.source_digest()
    assert lin.environment["scikit-learn"] == sklearn.__version__
    assert "python" in lin.environment
    env_files = {a.path for a in client.list_artifacts(result.run_id, "environment")}
    assert env_files == {"environment/conda.yaml", "environment/requirements.txt"}
    assert "mlflow[auth]>=3.17" in mlflow.artifacts.load_text(f"{lin.artifact_uri}/environment/conda.yaml")
    assert lin.test_metrics == {f"test_{k}": v for k, v in result.state.test_metrics.items()}

    # the same root from an alias, from the register stage's run, and from a trial run
    assert lineage.trace(client, "models:/mlcycle-ecommerce@champion").root_run_id == result.run_id
    version = client.get_model_version("mlcycle-ecommerce", "1")
    assert lineage.resolve_root(client, version.run_id)[0] == result.run_id
    trial = client.search_runs([lin.experiment_id], "tags.`mlcycle.run_kind` = 'trial'", max_results=1)[0]
    assert lineage.resolve_root(client, trial.info.run_id)[0] == result.run_id

    # --show prints it and runs nothing
    assert reproduce.main(["--show", "models:/mlcycle-ecommerce/1"]) == 0
    out = capsys.readouterr().out
    for expected in (result.run_id, "seed       42", result.state.data_digest, "environment", "config.yaml"):
        assert expected in out
    assert len(roots(client)) == 1


def test_reproduce_a_registered_version_gives_identical_metrics(tiny_cfg, capsys):
    first = pipeline.run(tiny_cfg(*QUICK))
    client = MlflowClient()

    assert reproduce.main(["models:/mlcycle-ecommerce/1"]) == 0
    out = capsys.readouterr().out
    assert f"reproduced: all {len(CLASSIFICATION_METRICS)} test metrics match exactly" in out
    for name, value in first.state.test_metrics.items():
        assert f"test_{name}" in out and repr(value) in out

    new = roots(client)[-1]
    assert new.info.run_id != first.run_id
    assert new.data.tags["mlcycle.reproduces"] == first.run_id
    assert new.data.tags["mlcycle.reproduces_model"] == "mlcycle-ecommerce/1"
    assert new.data.tags["mlcycle.reproduction"] == "match"
    original = client.get_run(first.run_id).data.metrics
    for key, value in new.data.metrics.items():
        if key.startswith("test_"):
            assert value == original[key], key
    # everything really ran again, and no new version was registered
    assert set(cache_status(client, new.info.run_id).values()) == {"off"}
    assert len(client.search_model_versions("name = 'mlcycle-ecommerce'")) == 1


def test_reproduce_after_the_data_changed_reports_the_digest_mismatch(tiny_cfg, tmp_path, capsys):
    from mlcycle.core.datasets import generate_sessions

    path = tmp_path / "sessions.csv"
    generate_sessions(600, 5, 0.0).to_csv(path, index=False)
    first = pipeline.run(
        tiny_cfg(*QUICK, "data=csv", f"data.path={path}", "data.target=purchased", "data.drop_columns=[session_id]")
    )
    frame = pd.read_csv(path)
    flip = frame.index[::4]
    frame.loc[flip, "purchased"] = 1 - frame.loc[flip, "purchased"]  # the file changed in place
    frame.to_csv(path, index=False)

    assert reproduce.main([first.run_id]) == 1
    out = capsys.readouterr().out
    assert "NOT reproduced" in out
    assert f"reason: data digest differs: {first.state.data_digest} (original)" in out
    assert str(path) in out
    assert roots(MlflowClient())[-1].data.tags["mlcycle.reproduction"] == "differs"


def test_reproduce_names_what_it_cannot_find(store, capsys):
    assert reproduce.main(["models:/no-such-model/1"]) == 2
    assert "error: models:/no-such-model/1: no such registered model version" in capsys.readouterr().err
    assert reproduce.main(["0123456789abcdef"]) == 2
    assert "run '0123456789abcdef' not found" in capsys.readouterr().err
    assert reproduce.main(["models:/only-a-name"]) == 2
    assert "expected models:/<name>/<version>" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model",
    [
        ["model=hist_gradient_boosting", "model.classifier.params.max_iter=15"],
        ["model=random_forest", "model.classifier.params.n_estimators=15"],
    ],
    ids=["hist_gradient_boosting", "random_forest"],
)
def test_reproduce_is_exact_for_tree_models(tiny_cfg, capsys, model):
    """Tree models draw random numbers in fitting: the seed must reach every one of them."""
    first = pipeline.run(tiny_cfg(*QUICK, *model, "tune.n_trials=2", "registry.enabled=false"))
    assert reproduce.main([first.run_id]) == 0, capsys.readouterr().out
