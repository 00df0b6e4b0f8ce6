"""Several workers on a fresh PostgreSQL Optuna database (issue 15), the way a team runs
them: `mlcycle train` with tune.n_jobs=2 creates the study on an empty database, and four
`mlcycle tune-worker` processes join as soon as its tune run shares the objective, all
logging to a real tracking server. Every process exits 0; the study has exactly n_trials
trials numbered 0..n-1 (workers racing for the last slots start no extra one); each is
exactly one trial run in MLflow. Four processes creating the study at the same instant are
in tests/integration/test_tuning_fresh_database.py."""

from __future__ import annotations

import re
import subprocess

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from mlcycle.commands.tune_worker import STORAGE_ENV
from mlcycle.core import tuning
from tests.server.harness import MLCYCLE, spawn, tiny_overrides, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_TRIALS = 24
WORKERS = 4


def test_a_pipeline_and_four_tune_workers_on_a_fresh_database(shared_server, new_database, experiment, cli_env, tmp_path):
    optuna_db = new_database("optuna_fresh", mlflow=False)  # empty: no Optuna tables yet
    env = cli_env(shared_server.url)
    overrides = tiny_overrides(
        experiment, "stages=[ingest,preprocess,features,tune]", "model=random_forest",
        "model.classifier.params.n_estimators=150", f"tune.n_trials={N_TRIALS}", "tune.n_jobs=2",
        "tune.parallel=process", "tune.plots=false", f"tune.storage={optuna_db}",
    )
    log = tmp_path / "pipeline.log"
    pipeline = spawn(["train", *overrides], env, log)
    client = MlflowClient(shared_server.url)

    def shared_tune_run():
        if pipeline.poll() is not None:
            raise AssertionError(f"the pipeline ended early:\n{log.read_text()[-3000:]}")
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], "tags.`mlcycle.stage` = 'tune'") if found else []
        if runs and "tune/objective.json" in {a.path for a in client.list_artifacts(runs[0].info.run_id, "tune")}:
            return runs[0]
        return None

    tune = wait_for(shared_tune_run, 300, "the tune run to share its objective")
    command = [str(MLCYCLE), "tune-worker", "--tune-run-id", tune.info.run_id, "--quiet"]
    workers = [subprocess.Popen(command, env=env | {STORAGE_ENV: optuna_db}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert pipeline.wait(timeout=600) == 0, log.read_text()[-3000:]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert f"the study has {N_TRIALS}/{N_TRIALS} finished" in out, out

    storage = tuning.open_storage(tuning.Search.of(study_name="-", storage=optuna_db))
    study = optuna.load_study(study_name=tune.data.params["study_name"], storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(N_TRIALS))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_TRIALS

    experiment_id = tune.info.experiment_id
    trials = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'", max_results=1000)
    assert sorted(int(t.data.tags["mlcycle.trial_number"]) for t in trials) == list(range(N_TRIALS))
    assert all(t.info.status == "FINISHED" for t in trials)
    by_workers = sum(int(re.search(r"ran (\d+) trial", out).group(1)) for out, _ in outputs)
    tune = client.get_run(tune.info.run_id)
    assert tune.info.status == "FINISHED" and tune.data.metrics["trials_complete"] == N_TRIALS
    assert tune.data.metrics["trials_run"] + by_workers == N_TRIALS  # the pipeline's share and the workers'
    assert client.search_runs([experiment_id], "attributes.status = 'RUNNING'") == []
