"""`mlcycle promote`, `rollback` and `models` against a real registry: gate, force, rollback
chain, and the audit trail each move leaves."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlcycle.cli import main
from mlcycle.tracking import registry
from tests.integration.registry_helpers import (
    NAME,
    WEAK,
    base_run,
    fit_flipped,
    fit_variant,
    metrics_on_test,
    register_variant,
)


@pytest.fixture
def versions(tiny_cfg, monkeypatch):
    """v1: a weak champion from the pipeline; v2: a good model; v3: a backwards model."""
    monkeypatch.setenv("MLCYCLE_USER", "alice")
    result = base_run(tiny_cfg, *WEAK)
    good, bad = fit_variant(result, C=1.0), fit_flipped(result)
    assert metrics_on_test(result, good)["roc_auc"] > result.state.test_metrics["roc_auc"] > metrics_on_test(result, bad)["roc_auc"]
    return result, register_variant(result, good), register_variant(result, bad)


def champion(client):
    return registry.alias_version(client, NAME, "champion")


def test_promote_force_rollback_and_the_audit_trail(versions, capsys):
    result, good, bad = versions
    client = MlflowClient()
    assert (good, bad) == ("2", "3") and champion(client) == "1"

    assert main(["promote", "--version", bad]) == 3  # the gate says no
    out = capsys.readouterr().out
    assert out.startswith("NOT promoted: mlcycle-ecommerce version 3 stays off champion (was version 1): gate failed: roc_auc")
    assert champion(client) == "1"
    assert client.get_model_version(NAME, bad).tags["mlcycle.gate"] == "failed"

    assert main(["promote", "--version", good]) == 0
    assert "promoted mlcycle-ecommerce version 2 to champion (was version 1): gate passed: roc_auc" in capsys.readouterr().out
    assert champion(client) == "2"
    assert client.get_model_version(NAME, good).tags[registry.TAG_PREVIOUS_CHAMPION] == "1"
    assert main(["promote", "--alias", "champion"]) == 0
    assert "already champion" in capsys.readouterr().out

    assert main(["promote", "--version", bad, "--force", "--reason", "incident drill"]) == 0
    assert champion(client) == "3"
    assert client.get_model_version(NAME, bad).tags["mlcycle.gate"] == "forced"

    assert main(["rollback"]) == 0
    assert "version 3 -> 2" in capsys.readouterr().out
    assert champion(client) == "2"
    assert main(["rollback", "--reason", "back to the pipeline's model"]) == 0
    assert champion(client) == "1"
    assert main(["rollback"]) == 2  # v1 replaced nobody
    assert "version 1 has no previous champion recorded; name one with --to VERSION" in capsys.readouterr().err
    assert main(["rollback", "--to", "2"]) == 0
    assert champion(client) == "2"

    history = registry.history(client, NAME)
    moves = [(e["action"], e["alias"], e["from"], e["to"]) for e in history]
    assert moves == [
        ("register", "challenger", None, "1"),
        ("promote", "champion", None, "1"),
        ("rejected", "champion", "1", "1"),
        ("promote", "champion", "1", "2"),
        ("force", "champion", "2", "3"),
        ("rollback", "champion", "3", "2"),
        ("rollback", "champion", "2", "1"),
        ("rollback", "champion", "1", "2"),
    ]
    assert all(e["user"] == "alice" and e["at"].endswith("Z") for e in history)
    assert history[0]["at"] < history[-1]["at"]
    promote = history[3]
    improvement = next(c for c in promote["gate"]["checks"] if c["kind"] == "improvement")
    assert improvement["candidate"] == pytest.approx(metrics_on_test(result, fit_variant(result, C=1.0))["roc_auc"])
    assert improvement["champion"] == pytest.approx(result.state.test_metrics["roc_auc"])  # same test rows
    assert promote["gate"]["evaluated_on"].endswith("/splits/test.parquet")
    assert history[4]["reason"].startswith("incident drill (forced by alice; gate not applied)")
    assert history[4]["gate"]["verdict"] == "forced"
    assert history[6]["reason"] == "back to the pipeline's model"

    capsys.readouterr()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0] == "mlcycle-ecommerce: 3 version(s)"
    row2 = next(line for line in lines if line.startswith("2 "))
    assert "champion" in row2 and "passed" in row2
    assert lines[1].split()[:3] == ["version", "aliases", "family"]
    assert next(line for line in lines if line.startswith("1 ")).split()[2] == "random_forest"  # the pipeline's
    assert row2.split()[2] == "-"  # the variants were registered without the tag
    assert "promotion history:" in listing and "incident drill" in listing
    assert sum(" rollback " in line for line in lines) == 3


def test_promote_bad_input_is_one_clear_line(versions, capsys, tmp_path):
    result, good, _ = versions
    assert main(["promote", "--version", "99"]) == 2
    assert "registered model 'mlcycle-ecommerce' has no version 99" in capsys.readouterr().err
    assert main(["promote", "--alias", "nope"]) == 2
    assert "has no alias 'nope'" in capsys.readouterr().err
    partial = tmp_path / "partial.csv"
    result.state.splits.test.drop(columns=["price", "purchased"]).to_csv(partial, index=False)
    assert main(["promote", "--version", good, "--data", str(partial)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {partial}: missing column(s) price, purchased needed to score mlcycle-ecommerce version 2"
    assert main(["promote", "--version", good, "registry.gate.min_absolute_change=abc"]) == 2
    assert "registry.gate.min_absolute_change=abc" in capsys.readouterr().err
