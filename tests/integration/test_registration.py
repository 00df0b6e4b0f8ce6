"""Registration is all or nothing (issue 14): a lock that cannot be taken creates no version,
a failure after the version exists takes it back out, a version a killed process left
half-registered is withdrawn by the next registration (the champion it took returned), and
every version reads on the registry page. Plus: a version whose ingest was a cache hit can
be promoted (its test split is followed to the run that holds it)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.cli import main
from mlcycle.config.registry import LockConfig
from mlcycle.core import liveness
from mlcycle.tracking import registration, registry
from mlcycle.tracking.locks import RegistryLockTimeout, registry_lock
from tests.integration.registry_helpers import NAME
from tests.integration.runs import CACHED, cache_status


def versions(client) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))


@pytest.fixture
def dead_token() -> str:
    """The owner token of a process that really existed and is gone."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = replace(liveness.current(), pid=child.pid, start=liveness.process_start(child.pid))
    child.kill()
    child.wait()
    return f"{owner.host}:{owner.pid}:{owner.start}"


def test_a_lock_timeout_creates_no_version(tiny_cfg, store):
    client = MlflowClient()
    first = pipeline.run(tiny_cfg("evaluate.plots=false"))
    assert versions(client) == ["1"]
    cfg = tiny_cfg("evaluate.plots=false", "model.classifier.params.max_iter=250", "registry.lock.timeout=2")
    with registry_lock(store, LockConfig(), NAME), pytest.raises(RegistryLockTimeout):  # held by another registration
        pipeline.run(cfg)
    assert versions(client) == ["1"]  # no version without its alias and gate tags
    assert registry.alias_version(client, NAME, "champion") == first.state.registered_version


def test_a_failure_after_the_version_exists_withdraws_it_and_restores_the_champion(tiny_cfg, monkeypatch):
    client = MlflowClient()
    pipeline.run(tiny_cfg("evaluate.plots=false"))
    real = registration.promote_locked

    def gate_then_fail(*args, **kwargs):
        real(*args, **kwargs, force=True)  # champion really moves to the new version...
        assert registry.alias_version(client, NAME, "champion") == "2"
        raise RuntimeError("lost the connection while describing the version")  # ...then it fails

    monkeypatch.setattr(registration, "promote_locked", gate_then_fail)
    with pytest.raises(RuntimeError, match="lost the connection"):
        pipeline.run(tiny_cfg("evaluate.plots=false", "model.classifier.params.max_iter=250"))
    assert versions(client) == ["1"]
    assert registry.alias_version(client, NAME, "champion") == "1"
    assert registry.alias_version(client, NAME, "challenger") is None  # it went with version 2
    actions = [e["action"] for e in registry.history(client, NAME)]
    assert actions[-2:] == ["restore", "withdrawn"]


def test_a_version_a_killed_process_left_pending_is_withdrawn_by_the_next_registration(tiny_cfg, dead_token):
    client = MlflowClient()
    pipeline.run(tiny_cfg("evaluate.plots=false"))  # version 1, champion
    # what a SIGKILL between the champion move and `complete` leaves: version 2 pending, champion
    source = client.get_model_version(NAME, "1").source
    half = registration.create_version(client, NAME, source, {
        registration.STATUS_TAG: registration.PENDING, registration.OWNER_TAG: dead_token,
        registry.TAG_PREVIOUS_CHAMPION: "1",
    })
    client.set_registered_model_alias(NAME, "champion", half)
    live = registration.create_version(client, NAME, source, {
        registration.STATUS_TAG: registration.PENDING, registration.OWNER_TAG: liveness.owner_token(),
    })

    third = pipeline.run(tiny_cfg("evaluate.plots=false", "model.classifier.params.max_iter=250"))
    remaining = versions(client)
    assert half not in remaining  # withdrawn: its process is gone
    assert live in remaining  # a live process's registration is left alone
    assert third.state.registered_version in remaining
    entry = next(e for e in registry.history(client, NAME) if e["action"] == "restore")
    assert (entry["from"], entry["to"]) == (half, "1")
    assert client.get_model_version(NAME, third.state.registered_version).tags[registration.STATUS_TAG] == "complete"


def test_every_version_has_a_readable_description(tiny_cfg):
    result = pipeline.run(tiny_cfg("evaluate.plots=false"))
    version = MlflowClient().get_model_version(NAME, result.state.registered_version)
    text = version.description
    assert text.startswith("logistic_regression | test roc_auc ")
    assert f"{result.state.test_metrics['roc_auc']:.4f}" in text
    assert "gate passed -> champion" in text
    assert f"report: runs:/{result.run_id}/report.html" in text


def test_a_version_whose_ingest_was_a_cache_hit_can_be_promoted(tiny_cfg, capsys):
    client = MlflowClient()
    pipeline.run(tiny_cfg(*CACHED))
    second = pipeline.run(tiny_cfg(*CACHED, "model.classifier.params.max_iter=250"))
    assert cache_status(client, second.run_id)["ingest"] == "hit"
    version = second.state.registered_version
    hit_ingest = next(r for r in client.search_runs([second.experiment_id], "tags.`mlcycle.stage` = 'ingest'")
                      if r.data.tags.get("mlflow.parentRunId") == second.run_id)
    # versions registered before this was fixed name the hit's own run, which holds no splits
    client.set_model_version_tag(NAME, version, registry.TAG_TEST_DATA, f"runs:/{hit_ingest.info.run_id}/splits/test.parquet")

    assert main(["promote", "--version", version, "--force", "--reason", "after a cache hit"]) == 0
    assert f"promoted {NAME} version {version} to champion" in capsys.readouterr().out
    assert registry.alias_version(client, NAME, "champion") == version
