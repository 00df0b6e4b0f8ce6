"""The promotion gate's decision on plain numbers (no tracking store needed)."""

from __future__ import annotations

import pytest

from mlcycle.core.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS, greater_is_better
from mlcycle.core.gate import GatePolicy, decide


def run(policy, candidate, champion=None, task_metrics=CLASSIFICATION_METRICS, **kw):
    return decide(policy, candidate, champion, greater_is_better=greater_is_better, applicable=task_metrics, **kw)


def test_no_champion_and_no_thresholds_passes():
    d = run(GatePolicy("roc_auc"), {"roc_auc": 0.6})
    assert d.passed and d.checks == ()
    assert d.summary() == "gate passed (no champion compared; no thresholds set)"


def test_absolute_thresholds_use_the_metric_direction():
    policy = GatePolicy("roc_auc", thresholds={"roc_auc": 0.70, "log_loss": 0.5})
    assert run(policy, {"roc_auc": 0.70, "log_loss": 0.5}).passed  # bounds are inclusive
    d = run(policy, {"roc_auc": 0.69, "log_loss": 0.51})
    assert not d.passed
    assert d.reasons == ["roc_auc 0.69 not >= threshold 0.7", "log_loss 0.51 not <= threshold 0.5"]


def test_candidate_must_strictly_beat_the_champion_when_no_change_is_configured():
    policy = GatePolicy("roc_auc")
    assert run(policy, {"roc_auc": 0.81}, {"roc_auc": 0.80}).passed
    tie = run(policy, {"roc_auc": 0.80}, {"roc_auc": 0.80})
    assert not tie.passed and "must be better than the champion" in tie.reasons[0]
    assert not run(policy, {"roc_auc": 0.79}, {"roc_auc": 0.80}).passed


def test_min_absolute_change_follows_metric_threshold_semantics():
    policy = GatePolicy("roc_auc", min_absolute_change=0.02)
    assert run(policy, {"roc_auc": 0.82}, {"roc_auc": 0.80}).passed  # exactly +0.02 passes
    d = run(policy, {"roc_auc": 0.81}, {"roc_auc": 0.80})
    assert not d.passed
    check = d.checks[0]
    assert (check.candidate, check.champion, check.bound) == (0.81, 0.80, pytest.approx(0.82))
    # lower is better: rmse must drop by the change
    rmse = GatePolicy("rmse", min_absolute_change=1.0)
    assert run(rmse, {"rmse": 9.0}, {"rmse": 10.0}, REGRESSION_METRICS).passed
    assert not run(rmse, {"rmse": 9.5}, {"rmse": 10.0}, REGRESSION_METRICS).passed


def test_min_relative_change_uses_the_magnitude_of_the_champion():
    policy = GatePolicy("r2", min_relative_change=0.1)
    # champion r2 = -0.5: candidate must reach -0.5 + 0.05 = -0.45
    assert run(policy, {"r2": -0.45}, {"r2": -0.5}, REGRESSION_METRICS).passed
    assert not run(policy, {"r2": -0.46}, {"r2": -0.5}, REGRESSION_METRICS).passed
    # both configured: the larger requirement applies (MLflow checks each; both must pass)
    both = GatePolicy("roc_auc", min_absolute_change=0.01, min_relative_change=0.05)
    assert not run(both, {"roc_auc": 0.83}, {"roc_auc": 0.80}).passed  # +0.03 < 0.04
    assert run(both, {"roc_auc": 0.84}, {"roc_auc": 0.80}).passed


def test_guard_metrics_allow_a_regression_up_to_the_tolerance():
    policy = GatePolicy("roc_auc", guards={"log_loss": 0.02, "accuracy": 0.01})
    champion = {"roc_auc": 0.80, "log_loss": 0.40, "accuracy": 0.90}
    assert run(policy, {"roc_auc": 0.85, "log_loss": 0.42, "accuracy": 0.89}, champion).passed
    d = run(policy, {"roc_auc": 0.85, "log_loss": 0.43, "accuracy": 0.85}, champion)
    assert not d.passed
    assert len(d.reasons) == 2
    assert d.reasons[0].startswith("guard log_loss 0.43 vs champion 0.4 (worse by 0.03")
    assert "beyond tolerance 0.01" in d.reasons[1]


def test_metrics_that_do_not_apply_to_the_task_are_skipped_not_failed():
    policy = GatePolicy("rmse", thresholds={"roc_auc": 0.7}, guards={"log_loss": 0.01, "mae": 0.5})
    d = run(policy, {"rmse": 9.0, "mae": 5.0}, {"rmse": 10.0, "mae": 5.2}, REGRESSION_METRICS)
    assert d.passed
    skipped = [c.metric for c in d.checks if c.skipped]
    assert skipped == ["roc_auc", "log_loss"]


def test_a_champion_that_cannot_be_scored_fails_the_gate_with_the_reason():
    d = run(GatePolicy("roc_auc"), {"roc_auc": 0.9}, None, champion_version="3",
            champion_error="missing required column(s): price")
    assert not d.passed
    assert d.reasons == ["champion version 3 could not be scored on the candidate's test set: missing required column(s): price"]


def test_missing_metrics_fail_clearly():
    d = run(GatePolicy("roc_auc", thresholds={"pr_auc": 0.3}), {"accuracy": 0.9}, {"roc_auc": 0.8})
    assert not d.passed
    assert d.reasons == ["pr_auc: missing from the candidate's metrics", "roc_auc: missing from the candidate's metrics"]


def test_decision_serializes_every_number_for_the_audit_trail():
    d = run(GatePolicy("roc_auc", min_absolute_change=0.01, guards={"brier": 0.01}),
            {"roc_auc": 0.85, "brier": 0.10}, {"roc_auc": 0.80, "brier": 0.12}, champion_version="2")
    report = d.to_dict()
    assert report["passed"] is True and report["champion_version"] == "2"
    improvement, guard = report["checks"]
    assert improvement == {
        "kind": "improvement", "metric": "roc_auc", "passed": True, "candidate": 0.85, "champion": 0.80,
        "bound": pytest.approx(0.81), "skipped": False, "message": improvement["message"],
    }
    assert guard["kind"] == "guard" and guard["bound"] == pytest.approx(0.13)
    assert d.summary().startswith("gate passed: roc_auc 0.85 vs champion 0.8 (+0.05; needs +0.01)")


def test_policy_rejects_negative_settings():
    with pytest.raises(ValueError):
        GatePolicy("roc_auc", min_absolute_change=-0.1)
    with pytest.raises(ValueError):
        GatePolicy("roc_auc", guards={"log_loss": -1})
