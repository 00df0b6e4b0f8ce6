"""Trial-run writers on a local sqlite store: the thread writer writes each trial whole,
and the process writer, which needs a tracking server, is refused with a clear error."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlcycle.errors import ConfigError
from mlcycle.tracking.trials import TrialRecord, open_writer


def records(n: int) -> list[TrialRecord]:
    states = ["FINISHED", "KILLED", "FAILED"]
    return [
        TrialRecord(
            name=f"trial-{i:03d}", params={"C": 0.1 * (i + 1), "penalty": "l2"},
            metrics={"cv_roc_auc": 0.5 + i / 100, "fold_0_roc_auc": 0.5}, tags={"mlcycle.trial_number": str(i)},
            status=states[i % 3], start_ms=1_000 + i, end_ms=2_000 + i,
        )
        for i in range(n)
    ]


def check_written(client: MlflowClient, experiment_id: str, parent: str, expected: list[TrialRecord]) -> None:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted(r.name for r in expected) and len(runs) == len(expected)
    for record in expected:
        run = by_name[record.name]
        assert run.info.status == record.status
        assert (run.info.start_time, run.info.end_time) == (record.start_ms, record.end_ms)
        assert run.data.params == {k: str(v) for k, v in record.params.items()}
        assert run.data.metrics == record.metrics
        assert run.data.tags["mlcycle.trial_number"] == record.tags["mlcycle.trial_number"]
        assert run.data.tags["mlcycle.run_kind"] == "trial"


def test_auto_uses_the_thread_writer_on_a_local_store(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("local")
    parent = client.create_run(experiment_id, run_name="tune").info.run_id
    writer = open_writer(client, experiment_id, parent)
    assert writer.kind == "thread"
    expected = records(5)
    for record in expected:
        writer.submit(record)
    writer.close()
    check_written(client, experiment_id, parent, expected)
    assert len(writer.written) == 5


def test_the_process_writer_needs_a_tracking_server(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(ConfigError, match=r"tune.trial_writer=process needs a tracking server .*sqlite:///"):
        open_writer(client, "0", "parent", "process")
