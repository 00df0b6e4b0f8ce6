"""Fault 7: four pipelines at once against one server (same experiment, same registered model):
all complete with all their runs, params and metrics, and four distinct model versions."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from tests.server.harness import all_runs, children, roots, spawn, tiny_overrides

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_PIPELINES = 4
N_TRIALS = 5


def test_four_concurrent_pipelines_keep_all_runs_and_metrics(
    shared_server, experiment, cli_env, tmp_path
):
    procs = [
        spawn(
            [
                "train",
                *tiny_overrides(
                    experiment,
                    f"seed={seed}",
                    f"tune.n_trials={N_TRIALS}",
                    f"mlflow.run_name=p{seed}",
                ),
            ],
            cli_env(shared_server.url),
            tmp_path / f"p{seed}.log",
        )
        for seed in range(N_PIPELINES)
    ]
    codes = [p.wait(timeout=900) for p in procs]
    logs = [(tmp_path / f"p{seed}.log").read_text() for seed in range(N_PIPELINES)]
    assert codes == [0] * N_PIPELINES, "\n\n".join(log[-2000:] for log in logs)

    client = MlflowClient(shared_server.url)
    found = roots(client, experiment)
    assert sorted(r.info.run_name for r in found) == [f"p{seed}" for seed in range(N_PIPELINES)]
    versions = set()
    for root in found:
        assert root.info.status == "FINISHED"
        seed = root.info.run_name[1:]
        assert root.data.params["seed"] == seed and root.data.params["tune.n_trials"] == str(
            N_TRIALS
        )
        assert {"cv_roc_auc", "test_roc_auc", "test_accuracy", "test_log_loss"} <= set(
            root.data.metrics
        )
        assert {f"time_{s}_seconds" for s in STAGES} <= set(root.data.metrics)
        exp_id = root.info.experiment_id
        stages = children(client, exp_id, root.info.run_id)
        assert [s.info.run_name for s in stages] == list(STAGES)
        assert all(
            s.info.status == "FINISHED" and "time_seconds" in s.data.metrics for s in stages
        )
        trials = children(client, exp_id, stages[STAGES.index("tune")].info.run_id)
        assert sorted(t.info.run_name for t in trials) == [
            f"trial-{i:03d}" for i in range(N_TRIALS)
        ]
        assert all(
            t.info.status == "FINISHED" and "cv_roc_auc" in t.data.metrics and "C" in t.data.params
            for t in trials
        )
        versions.add(root.data.tags["mlcycle.registered_version"])
    assert versions == {str(v) for v in range(1, N_PIPELINES + 1)}
    assert {
        str(v.version) for v in client.search_model_versions(f"name = '{experiment}'")
    } == versions
    assert len(all_runs(client, experiment)) == N_PIPELINES * (1 + len(STAGES) + N_TRIALS)
    assert [r for r in all_runs(client, experiment) if r.info.status == "RUNNING"] == []
