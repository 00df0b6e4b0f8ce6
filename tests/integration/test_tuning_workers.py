"""Distributed tuning: ``mlcycle tune-worker`` processes join the study of a tune run
(journal file on this machine; PostgreSQL when MLCYCLE_TEST_POSTGRES_URI is set), run
distinct trials, and log them all under that tune run. Plus the worker's refusals."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from mlcycle import pipeline
from mlcycle.commands import tune_worker
from tests.conftest import subprocess_env

TUNE_ONLY = "stages=[ingest,preprocess,features,tune]"


def test_two_worker_processes_add_distinct_trials_under_the_same_tune_run(tiny_cfg, store, tmp_path, shared_storage):
    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=2", f"tune.storage={shared_storage}"))
    client = MlflowClient()
    tune = client.search_runs([result.experiment_id], filter_string="tags.`mlcycle.stage` = 'tune'")[0]
    assert {a.path for a in client.list_artifacts(tune.info.run_id, "tune")} == {"tune/objective.json", "tune/train.parquet"}
    password = shared_storage.partition("://")[2].partition("@")[0].partition(":")[2]
    if password:  # a password in the storage URL reaches no param, tag or config artifact
        root = client.get_run(result.run_id)
        logged = [*root.data.params.values(), *tune.data.params.values(), *root.data.tags.values(), *tune.data.tags.values()]
        logged.append(mlflow.artifacts.load_text(f"{root.info.artifact_uri}/config.yaml"))
        assert not [text for text in logged if password in text]
        assert ":***@" in tune.data.params["storage"] and ":***@" in root.data.params["tune.storage"]

    command = [
        sys.executable, "-m", "mlcycle", "tune-worker", "--tune-run-id", tune.info.run_id,
        "--n-trials", "8", "--max-trials", "3", "--quiet",
    ]
    env = subprocess_env(store, tmp_path) | {tune_worker.STORAGE_ENV: shared_storage}  # URL not on argv
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "ran 3 trial(s)" in out

    trials = client.search_runs([result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    numbers = sorted(int(t.data.tags["mlcycle.trial_number"]) for t in trials)
    assert numbers == list(range(8))  # distinct: no trial run twice, none lost
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.data.tags["mlcycle.worker"]] = by_worker.get(t.data.tags["mlcycle.worker"], 0) + 1
    assert sorted(by_worker.values()) == [2, 3, 3]  # the stage's process, then each worker
    assert {w.pid for w in workers} == {int(token.split(":")[1]) for token, n in by_worker.items() if n == 3}

    study = optuna.load_study(study_name=tune.data.params["study_name"], storage=tuning_url(shared_storage))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    assert len({repr(t.params) for t in study.trials}) == 8


def tuning_url(storage: str):
    from mlcycle.core.tuning import Search, open_storage

    return open_storage(Search.of(study_name="-", storage=storage))


def test_worker_refuses_what_it_cannot_join(tiny_cfg, tmp_path, capsys):
    def worker(*args: str) -> tuple[int, str]:
        code = tune_worker.main(list(args))
        return code, capsys.readouterr().err.strip()

    code, err = worker("--tune-run-id", "abc", "--storage", f"sqlite:///{tmp_path}/s.db")
    assert code == 2 and "sqlite cannot be shared between processes" in err
    code, err = worker("--tune-run-id", "abc")
    assert code == 2 and "no storage" in err
    journal = f"journal://{tmp_path / 'study.log'}"
    code, err = worker("--tune-run-id", "0" * 32, "--storage", journal)
    assert code == 2 and "not found" in err

    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=1"))  # study in memory
    tune = MlflowClient().search_runs([result.experiment_id], filter_string="tags.`mlcycle.stage` = 'tune'")[0]
    code, err = worker("--tune-run-id", tune.info.run_id, "--storage", journal)
    assert code == 2 and "kept its study in memory" in err
    ingest = MlflowClient().search_runs([result.experiment_id], filter_string="tags.`mlcycle.stage` = 'ingest'")[0]
    code, err = worker("--tune-run-id", ingest.info.run_id, "--storage", journal)
    assert code == 2 and "is not a tune stage run" in err


def test_worker_will_not_start_a_study_that_does_not_exist(tiny_cfg, tmp_path, capsys):
    result = pipeline.run(tiny_cfg(TUNE_ONLY, "tune.n_trials=1", f"tune.storage=journal://{tmp_path / 'a.log'}"))
    tune = MlflowClient().search_runs([result.experiment_id], filter_string="tags.`mlcycle.stage` = 'tune'")[0]
    code = tune_worker.main(["--tune-run-id", tune.info.run_id, "--storage", f"journal://{tmp_path / 'other.log'}", "--quiet"])
    assert code == 2
    assert "not found in the storage" in capsys.readouterr().err
