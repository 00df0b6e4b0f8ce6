"""A `model-versions/create` or `logged-models` create that committed but whose response was
lost is retried by MLflow's client. Through a proxy that loses real responses from a real
server, a pipeline must still leave exactly one registered version (complete, with its
aliases and gate tags) and no LoggedModel PENDING forever."""

from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.tracking import registration
from tests.conftest import compose
from tests.server.harness import LosingProxy, tiny_overrides

pytestmark = pytest.mark.postgres


def lose_first(*suffixes: str):
    """A ``lose`` rule: the first POST to each path ending in one of ``suffixes``."""
    pending = set(suffixes)
    lock = threading.Lock()

    def rule(method: str, path: str, body: bytes) -> bool:
        if method != "POST":
            return False
        with lock:
            hit = next((s for s in pending if path.rstrip("/").endswith(s)), None)
            if hit is not None:
                pending.discard(hit)
            return hit is not None

    return rule


def test_retried_version_and_logged_model_creates_leave_one_complete_version(shared_server, experiment, remote):
    lost = ("/model-versions/create", "/logged-models")
    with LosingProxy(shared_server.port, lose_first(*lost)) as proxy:
        remote(proxy.url)
        cfg = compose(tiny_overrides(experiment, "evaluate.plots=false", f"registry.model_name={experiment}"))
        result = pipeline.run(cfg)

    # the faults really happened, and the client sent each request again
    assert sorted(path.rstrip("/").rsplit("/mlflow", 1)[1] for _, path, _ in proxy.lost) == sorted(lost)
    for suffix in lost:
        assert sum(m == "POST" and p.rstrip("/").endswith(suffix) for m, p, _ in proxy.requests) == 2, suffix

    client = MlflowClient(shared_server.url)
    versions = client.search_model_versions(f"name = '{experiment}'")
    assert [v.version for v in versions] == [result.state.registered_version]  # the twin is gone
    version = client.get_model_version(experiment, versions[0].version)  # search results carry no aliases
    assert version.tags[registration.STATUS_TAG] == registration.COMPLETE
    assert version.tags["mlcycle.gate"] == "passed" and set(version.aliases) == {"challenger", "champion"}
    assert version.description.startswith("logistic_regression | test roc_auc")

    register_run = next(r for r in client.search_runs([result.experiment_id], "tags.`mlcycle.stage` = 'register'"))
    models = client.search_logged_models([result.experiment_id], filter_string=f"source_run_id = '{register_run.info.run_id}'")
    assert sorted(str(m.status) for m in models) == ["FAILED", "READY"]  # the ghost ended, never PENDING
    assert version.source.endswith(next(m for m in models if str(m.status) == "READY").model_id)
