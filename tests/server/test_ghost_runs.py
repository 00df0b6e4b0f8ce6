"""Fault 5: a `runs/create` that committed but whose response was lost is retried by MLflow's
client, which creates a second run. A proxy between the pipeline and a real server loses
real responses; the run tree must still hold exactly one root, one run per stage and one
run per trial, the duplicates deleted (and ended, not left RUNNING)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlcycle import pipeline
from mlcycle.config.schema import STAGES
from mlcycle.tracking.runs import GHOST_TAG, TOKEN_TAG
from tests.conftest import compose
from tests.server.harness import (
    LosingProxy,
    all_runs,
    children,
    lose_first_create_of,
    roots,
    tiny_overrides,
)

pytestmark = pytest.mark.postgres


def test_retried_creates_leave_no_ghost_runs(shared_server, experiment, remote):
    lost_names = ("ghost-root", "features", "trial-001")
    with LosingProxy(shared_server.port, lose_first_create_of(*lost_names)) as proxy:
        remote(proxy.url)
        cfg = compose(
            tiny_overrides(
                experiment,
                "mlflow.run_name=ghost-root",
                "registry.enabled=false",
                "evaluate.plots=false",
            )
        )
        result = pipeline.run(cfg)

    # the fault really happened: each lost create was sent again by the client
    assert sorted(json.loads(body)["run_name"] for _, _, body in proxy.lost) == sorted(lost_names)
    creates = [
        json.loads(body)["run_name"]
        for method, path, body in proxy.requests
        if path.endswith("/runs/create")
    ]
    for name in lost_names:
        assert creates.count(name) == 2, name

    client = MlflowClient(shared_server.url)
    [root] = roots(client, experiment)
    assert root.info.run_id == result.run_id and root.info.status == "FINISHED"
    exp_id = root.info.experiment_id
    stages = children(client, exp_id, root.info.run_id)
    assert [r.info.run_name for r in stages] == list(STAGES)
    tune = stages[STAGES.index("tune")]
    trials = children(client, exp_id, tune.info.run_id)
    assert sorted(t.info.run_name for t in trials) == [
        f"trial-{i:03d}" for i in range(cfg.tune.n_trials)
    ]
    assert all(t.info.status == "FINISHED" and t.data.metrics for t in trials)
    assert len(all_runs(client, experiment)) == 1 + len(STAGES) + cfg.tune.n_trials

    ghosts = all_runs(client, experiment, ViewType.DELETED_ONLY)
    assert sorted(g.info.run_name for g in ghosts) == sorted(lost_names)
    kept_tokens = {r.data.tags[TOKEN_TAG] for r in [root, *stages, *trials]}
    for ghost in ghosts:
        assert ghost.data.tags[TOKEN_TAG] in kept_tokens  # the twin of a kept run
        assert ghost.info.status == "FAILED"
        assert ghost.data.tags[GHOST_TAG] == "duplicate created by a retried request"
