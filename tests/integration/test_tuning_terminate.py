"""SIGTERM during a parallel study: the pipeline stops its spawned trial workers, their
running trials end FAIL (not RUNNING, so a resume redoes them), and every run ends KILLED."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.conftest import TINY, subprocess_env


def test_sigterm_stops_worker_processes_and_leaves_nothing_running(store, tmp_path):
    journal = f"journal://{tmp_path / 'study.log'}"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlcycle", "train", *TINY, "stages=[ingest,preprocess,features,tune]",
            "model=random_forest", "model.classifier.params.n_estimators=80", "tune.n_trials=40",
            "tune.n_jobs=2", f"tune.storage={journal}",
        ],
        env=subprocess_env(store, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient(store)
    deadline = time.monotonic() + 240
    tune = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        found = client.search_runs(["0", "1"], filter_string="tags.`mlcycle.stage` = 'tune'")
        if found:
            tune = found[0]
            trials = client.search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
            workers = {t.data.tags["mlcycle.worker"] for t in trials}
            if len(workers) >= 2:  # both processes are running trials
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) != 0
    proc.stderr.close()

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    study = optuna.load_study(study_name=tune.data.tags["mlcycle.study_name"], storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert study.get_trials(states=(TrialState.FAIL,)), "the interrupted trials should have ended FAIL"
    assert len(study.trials) < 40
    time.sleep(2)
    assert len(optuna.load_study(study_name=study.study_name, storage=storage).trials) == len(study.trials)  # workers gone

    assert client.get_run(tune.info.run_id).info.status == "KILLED"
    assert client.get_run(tune.data.tags["mlflow.parentRunId"]).info.status == "KILLED"
    assert client.search_runs(["1"], filter_string="attributes.status = 'RUNNING'") == []
