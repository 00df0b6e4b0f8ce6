"""The gate inside the pipeline: champion re-scored on the candidate's test set, pass and
fail, a champion that cannot be scored, and what the audit trail records."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.core.evaluation import compute_metrics, predict_all
from mlcycle.tracking import registry
from tests.integration.registry_helpers import NAME, NO_GUARDS, WEAK


def champion_version(client):
    return registry.alias_version(client, NAME, "champion")


def report(client, version):
    return json.loads(client.get_model_version(NAME, version).tags[registry.TAG_GATE_REPORT])


def test_champion_is_rescored_on_the_candidates_test_set_and_a_better_model_is_promoted(tiny_cfg):
    first = pipeline.run(tiny_cfg(*WEAK))
    assert first.state.promoted and first.state.aliases == ("challenger", "champion")
    # different data seed: a different test split, on which the champion must be re-scored
    second = pipeline.run(tiny_cfg("data.seed=11", "evaluate.plots=false", *NO_GUARDS))
    client = MlflowClient()
    state = second.state

    champion_model = mlflow.sklearn.load_model(f"models:/{NAME}/1")
    X, y = state.splits.test[list(state.schema.features)], state.splits.test[state.schema.target]
    y_pred, proba = predict_all(champion_model, X, state.schema.task)
    rescored = compute_metrics(state.schema.task, y, y_pred, proba, state.schema.classes)
    assert rescored["roc_auc"] != pytest.approx(first.state.test_metrics["roc_auc"])  # really other rows

    gate = report(client, "2")
    improvement = next(c for c in gate["checks"] if c["kind"] == "improvement")
    assert improvement["champion"] == pytest.approx(rescored["roc_auc"])
    assert improvement["candidate"] == pytest.approx(state.test_metrics["roc_auc"])
    assert gate["champion_version"] == "1"
    assert improvement["passed"] is (state.test_metrics["roc_auc"] > rescored["roc_auc"])
    assert state.promoted is improvement["passed"]
    assert champion_version(client) == ("2" if state.promoted else "1")
    assert state.promoted, "a tuned model should beat a single stump on the same rows"
    version = client.get_model_version(NAME, "2")
    assert version.tags["mlcycle.gate"] == "passed"
    assert version.tags[registry.TAG_PREVIOUS_CHAMPION] == "1"
    root = client.get_run(second.run_id)
    assert root.data.tags["mlcycle.promoted"] == "true"
    register_run = client.search_runs(
        [root.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{second.run_id}' and tags.`mlcycle.stage` = 'register'",
    )[0]
    assert register_run.data.metrics["gate_champion_roc_auc"] == pytest.approx(rescored["roc_auc"])
    assert register_run.data.tags["mlcycle.gate"] == "passed"


def test_a_failed_gate_registers_the_challenger_with_reasons_and_keeps_the_champion(tiny_cfg, capsys):
    pipeline.run(tiny_cfg("evaluate.plots=false"))
    # an impossible threshold: the gate must fail, whatever the numbers
    second = pipeline.run(tiny_cfg("data.seed=11", "evaluate.plots=false", "+registry.gate.thresholds.roc_auc=0.999"))
    client = MlflowClient()
    assert not second.state.promoted
    assert second.state.aliases == ("challenger",)
    assert registry.alias_version(client, NAME, "challenger") == "2"
    assert champion_version(client) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["mlcycle.gate"] == "failed"
    assert "not >= threshold 0.999" in tags["mlcycle.gate.summary"]
    assert report(client, "2")["passed"] is False
    stage_tags = client.get_run(second.run_id).data.tags
    assert stage_tags["mlcycle.promoted"] == "false"

    history = registry.history(client, NAME)
    assert [(e["action"], e["alias"], e["from"], e["to"]) for e in history] == [
        ("register", "challenger", None, "1"),
        ("promote", "champion", None, "1"),
        ("register", "challenger", "1", "2"),
        ("rejected", "champion", "1", "1"),
    ]
    rejected = history[-1]
    assert rejected["candidate"] == "2"
    assert "not >= threshold 0.999" in rejected["reason"]
    assert rejected["user"] and rejected["at"].endswith("Z")
    threshold = next(c for c in rejected["gate"]["checks"] if c["kind"] == "threshold")
    assert threshold["bound"] == 0.999 and threshold["candidate"] == pytest.approx(second.state.test_metrics["roc_auc"])


def test_a_champion_that_cannot_be_scored_fails_the_gate_or_is_ignored_per_config(tiny_cfg):
    # the champion is a wine model registered under the same name: other columns, other task
    pipeline.run(tiny_cfg("data=wine", f"registry.model_name={NAME}", "evaluate.plots=false"))
    client = MlflowClient()
    assert champion_version(client) == "1"
    failed = pipeline.run(tiny_cfg("evaluate.plots=false"))
    assert not failed.state.promoted
    summary = client.get_model_version(NAME, "2").tags["mlcycle.gate.summary"]
    assert summary.startswith("gate failed: champion version 1 could not be scored on the candidate's test set: ")
    assert "multiclass" in summary
    assert champion_version(client) == "1"

    promoted = pipeline.run(tiny_cfg("evaluate.plots=false", "registry.gate.on_champion_error=promote"))
    assert promoted.state.promoted
    assert champion_version(client) == "3"
    assert "champion version 1 could not be scored" in promoted.state.gate_summary
    assert "ignored (registry.gate.on_champion_error=promote)" in promoted.state.gate_summary
    assert "multiclass" in report(client, "3")["champion_error_ignored"]


def test_gate_disabled_promotes_every_version_and_says_so(tiny_cfg):
    pipeline.run(tiny_cfg("evaluate.plots=false"))
    second = pipeline.run(tiny_cfg("evaluate.plots=false", "registry.gate.enabled=false"))
    client = MlflowClient()
    assert second.state.promoted and champion_version(client) == "2"
    assert client.get_model_version(NAME, "2").tags["mlcycle.gate"] == "disabled"


def test_unknown_gate_metric_is_rejected_at_compose_time(tiny_cfg):
    from mlcycle.errors import ConfigError

    with pytest.raises(ConfigError, match=r"registry.gate.guard_metrics: unknown metric\(s\) \['calibration'\]"):
        tiny_cfg("+registry.gate.guard_metrics.calibration=0.1")
