"""Crash and resume: a pipeline process is SIGKILLed mid-study; the rerun resumes the same
Optuna study (finished trials count toward n_trials), retries nothing that finished, and
ends the runs the dead process left RUNNING."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from mlcycle import pipeline
from tests.conftest import TINY, subprocess_env

N_TRIALS = 12


def test_killed_study_resumes_and_stale_runs_are_closed(tiny_cfg, store, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    overrides = [
        "stages=[ingest,preprocess,features,tune]", "model=random_forest", "model.classifier.params.n_estimators=60",
        f"tune.n_trials={N_TRIALS}", f"tune.storage={storage}", "registry.enabled=false",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcycle", "train", *TINY, *overrides],
        env=subprocess_env(store, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient(store)
    first_tune = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the pipeline ended before it could be killed: {proc.stderr.read()[-2000:]}"
        tunes = client.search_runs(["0", "1"], filter_string="tags.`mlcycle.stage` = 'tune'")
        if tunes:
            first_tune = tunes[0]
            written = client.search_runs(["1"], filter_string=f"tags.`mlflow.parentRunId` = '{first_tune.info.run_id}'")
            if len(written) >= 3:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no handler runs: what a power cut or the OOM killer does
    proc.wait(30)
    proc.stderr.close()
    assert first_tune is not None

    old_root_id = first_tune.data.tags["mlflow.parentRunId"]
    assert client.get_run(first_tune.info.run_id).info.status == "RUNNING"
    assert client.get_run(old_root_id).info.status == "RUNNING"
    name = first_tune.data.tags["mlcycle.study_name"]
    before = optuna.load_study(study_name=name, storage=storage).trials
    finished_before = [t for t in before if t.state == TrialState.COMPLETE]
    assert 3 <= len(finished_before) < N_TRIALS

    result = pipeline.run(tiny_cfg(*overrides))

    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert [t.params for t in complete[: len(finished_before)]] == [t.params for t in finished_before]  # kept, not redone
    # a trial the kill interrupted is FAIL (lost), not RUNNING, and was run again
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    stages = client.search_runs([result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'")
    tune = next(r for r in stages if r.info.run_name == "tune")
    assert tune.data.tags["mlcycle.study_name"] == name
    assert tune.data.metrics["trials_resumed"] == len(finished_before)
    assert tune.data.metrics["trials_run"] == N_TRIALS - len(finished_before)
    new_trials = client.search_runs([result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    assert len(new_trials) == N_TRIALS - len(finished_before)
    assert min(int(t.data.tags["mlcycle.trial_number"]) for t in new_trials) >= len(finished_before)

    for run_id in (first_tune.info.run_id, old_root_id):
        stale = client.get_run(run_id)
        assert stale.info.status == "FAILED"
        error = stale.data.tags["mlcycle.error"]
        assert error.startswith("stale: process ") and " is gone; " in error, error
        assert "closed by the next mlcycle pipeline" in error  # hygiene.sweep, as the experiment opens
    assert client.search_runs([result.experiment_id], filter_string="attributes.status = 'RUNNING'") == []
