"""Fault 2: the tracking server is restarted while the pipeline runs. MLflow's client retries
(minutes of backoff) cover the downtime; the run completes and nothing is lost."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from tests.server.harness import (
    MlflowServer,
    all_runs,
    children,
    roots,
    spawn,
    tiny_overrides,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_TRIALS = 60


def test_server_restart_mid_run_loses_nothing(new_database, experiment, cli_env, tmp_path):
    server = MlflowServer(new_database("restart"), tmp_path / "server").start()
    try:
        client = MlflowClient(server.url)
        proc = spawn(
            ["train", *tiny_overrides(experiment, f"tune.n_trials={N_TRIALS}")],
            cli_env(server.url),
            tmp_path / "train.log",
        )

        def trials_being_logged():
            assert proc.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            exp = client.get_experiment_by_name(experiment)
            tune = exp and client.search_runs(
                [exp.experiment_id], filter_string="tags.`mlcycle.stage` = 'tune'"
            )
            return tune and children(client, exp.experiment_id, tune[0].info.run_id)

        wait_for(trials_being_logged, 300, "trial runs to be logged", interval=0.3)
        server.stop()  # mid-tune: trials keep finishing and queue up while nobody answers
        assert proc.poll() is None
        server.start()
        returncode = proc.wait(timeout=600)
        output = (tmp_path / "train.log").read_text()
        assert returncode == 0, output[-3000:]

        [root] = roots(client, experiment)
        assert root.info.status == "FINISHED"
        exp_id = root.info.experiment_id
        stages = children(client, exp_id, root.info.run_id)
        assert [r.info.run_name for r in stages] == list(STAGES)
        assert all(r.info.status == "FINISHED" for r in stages)
        tune = stages[3]
        trials = children(client, exp_id, tune.info.run_id)
        assert sorted(t.info.run_name for t in trials) == [
            f"trial-{i:03d}" for i in range(N_TRIALS)
        ]
        for trial in trials:
            assert trial.info.status == "FINISHED"
            assert {"C", "class_weight"} <= set(trial.data.params)
            assert {"cv_roc_auc", "fold_0_roc_auc", "fold_1_roc_auc"} <= set(trial.data.metrics)
        assert tune.data.metrics["trials_complete"] == N_TRIALS
        assert root.data.params["tune.n_trials"] == str(N_TRIALS)
        assert {"cv_roc_auc", "test_roc_auc", "test_f1"} <= set(root.data.metrics)
        assert root.data.tags["mlcycle.registered_version"] == "1"
        assert str(client.get_model_version_by_alias(experiment, "champion").version) == "1"
        # exactly the runs of one pipeline: no ghost from a request retried across the restart
        assert len(all_runs(client, experiment)) == 1 + len(STAGES) + N_TRIALS
    finally:
        server.stop()
