"""The retraining loop on a real sqlite store: a trained champion, then monitoring runs on
generated batches without and with drift, and the retrain a decay verdict triggers.

One champion is trained per module (a few seconds); every test watches that version
(monitor.model_version=1) so the retrains other tests trigger cannot change what it sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.commands import monitor as monitor_cmd
from mlcycle.commands import retrain as retrain_cmd
from mlcycle.errors import DataError, MlcycleError
from mlcycle.monitoring import monitor as monitoring
from mlcycle.monitoring import retrain as retraining
from mlcycle.report.render import external_references
from tests.conftest import TINY, compose, private_store

# 3,000 rows give a 600-row test split: a registered ROC AUC stable enough that a
# no-drift batch stays within the 0.05 tolerance (measured: within 0.02).
TRAIN = [*TINY, "data.n_rows=3000", "evaluate.plots=false"]
BATCH = ["batch.n_rows=1500", "monitor.model_version=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, template_store):
    """A private store holding one trained, registered champion (version 1)."""
    root = tmp_path_factory.mktemp("monitoring")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for _ in private_store(root, template_store, mp):
            yield root, pipeline.run(compose(TRAIN))


def monitor_cfg(*overrides: str):
    from mlcycle.config.load import compose as compose_config

    return compose_config([*BATCH, *overrides], config_name="monitor")


def roots(client, kind: str) -> list:
    return client.search_runs(
        [client.get_experiment_by_name("mlcycle").experiment_id],
        filter_string=f"tags.`mlcycle.run_kind` = '{kind}'",
        max_results=1000,
    )


def test_no_drift_gives_ok_and_no_retrain(trained):
    client = MlflowClient()
    pipelines_before = len(roots(client, "pipeline"))
    result = monitoring.monitor(monitor_cfg("batch.seed=2001", "monitor.retrain_on=drift"))

    assert result.verdict == "ok" and result.exit_code == 0
    assert result.drifted_share == 0.0
    assert result.decay is not None and not result.decay.decayed
    assert abs(result.decay.worsening) < 0.05
    assert result.retrain is None
    assert len(roots(client, "pipeline")) == pipelines_before  # nothing trained

    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["mlcycle.run_kind"] == "monitor" and tags["mlcycle.verdict"] == "ok"
    assert tags["mlcycle.monitored_model"] == "mlcycle-ecommerce" and tags["mlcycle.monitored_version"] == "1"
    assert tags["mlcycle.reference_run_id"] == trained[1].run_id
    schema = trained[1].state.schema
    for feature in schema.features:
        assert metrics[f"psi.{feature}"] < 0.2
        assert 0 <= metrics[f"p_value.{feature}"] <= 1
    assert metrics["drifted_share"] == 0.0
    assert metrics["batch_roc_auc"] == pytest.approx(result.batch_metrics["roc_auc"])
    assert metrics["registered_roc_auc"] == pytest.approx(trained[1].state.test_metrics["roc_auc"], rel=1e-5)
    assert {"prediction_psi", "prediction_p_value"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"report.html", "drift.json", "batch"} <= artifacts
    html = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/report.html")
    assert html.count("data:image/png;base64,") == len(schema.features) + 1  # + the prediction
    assert "<script" not in html  # self-contained, nothing to run
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/drift.json")
    assert report["verdict"] == "ok" and len(report["features"]) == len(schema.features)


def test_strong_drift_gives_decay_and_exactly_one_linked_retrain(trained):
    client = MlflowClient()
    cfg = monitor_cfg("batch.seed=2002", "batch.drift=2", "monitor.retrain_on=decay")
    heard = []
    result = monitoring.monitor(cfg, on_verdict=lambda found: heard.append(("verdict", found.verdict)),
                                say=lambda line: heard.append(("say", line)))

    assert result.verdict == "decay" and result.exit_code == 11
    assert result.decay.decayed and result.decay.worsening > 0.15
    assert result.drifted_share >= 0.5
    drifted = {r.feature for r in result.features if r.drifted}
    assert {"device", "channel", "days_since_last_visit", "visits_30d"} <= drifted
    assert "product_category" not in drifted  # the generator does not shift it

    triggered = retraining.triggered_runs(client, result.run_id)
    assert len(triggered) == 1
    retrain_run = triggered[0]
    assert retrain_run.info.run_id == result.retrain.run_id
    assert retrain_run.info.status == "FINISHED"
    assert retrain_run.data.tags["mlcycle.run_kind"] == "pipeline"
    assert "mlflow.parentRunId" not in retrain_run.data.tags  # a root run of its own
    assert retrain_run.data.tags["mlcycle.trigger_verdict"] == "decay"
    # trained on the reference (all 3 splits) + the labelled batch, with the champion's config
    ingest = next(r for r in client.search_runs(
        [retrain_run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{retrain_run.info.run_id}'"
    ) if r.info.run_name == "ingest")
    assert ingest.data.metrics["rows_in"] == 3000 + 1500
    assert retrain_run.data.params["model.name"] == "logistic_regression"
    assert retrain_run.data.params["data.source"] == "file"

    mon = client.get_run(result.run_id).data.tags
    assert mon["mlcycle.retrain_run_id"] == retrain_run.info.run_id
    assert mon["mlcycle.retrain_version"] == result.retrain.version
    # the registry decided; we only read what it decided
    champion = str(client.get_model_version_by_alias("mlcycle-ecommerce", "champion").version)
    assert mon["mlcycle.champion_after"] == champion == result.retrain.champion_after

    # the verdict was told first, then the monitoring run, then the retrain as it started
    # (and where its page is in the MLflow UI)
    assert [kind for kind, _ in heard] == ["verdict", "say", "say", "say"] and heard[0] == ("verdict", "decay")
    assert heard[1][1].startswith(f"monitoring run {result.run_id}")
    assert heard[2][1].startswith("  browse: ") and f"/runs/{result.run_id}/artifacts/report.html?" in heard[2][1]
    assert heard[3][1].startswith("retraining: mlcycle-ecommerce with the config of v1 on 3000 reference + 1500 batch rows")

    # its page names the run the retrain made, with its path in the MLflow UI
    page = mlflow.artifacts.load_text(f"{client.get_run(result.run_id).info.artifact_uri}/report.html")
    experiment = retrain_run.info.experiment_id
    assert 'data-action="finished"' in page
    assert (f'<table class="kv" id="triggered-run"><tr><th>retrain (pipeline run)</th><td><code>{retrain_run.info.run_id}</code>'
            f' <span class="muted">(in the MLflow UI: <span class="mono">#/experiments/{experiment}/runs/{retrain_run.info.run_id}?workflowType=machine_learning</span>)')  in page
    assert f"mlcycle-ecommerce v{result.retrain.version}" in page
    assert page.count("data:image/png;base64,") == len(result.features) + 1
    assert external_references(page) == []

    # a second retrain for the same monitoring run is refused, and creates nothing
    with pytest.raises(MlcycleError, match="already triggered"):
        retraining.retrain(cfg, result.run_id)
    assert len(retraining.triggered_runs(client, result.run_id)) == 1


def test_unlabelled_batch_gives_drift_verdicts_only(trained):
    client = MlflowClient()
    pipelines_before = len(roots(client, "pipeline"))
    result = monitoring.monitor(
        monitor_cfg("batch.seed=2003", "batch.drift=2", "batch.labelled=false", "monitor.retrain_on=drift", "monitor.report=false")
    )
    assert result.verdict == "drift" and result.exit_code == 10
    assert result.labelled_rows == 0 and result.decay is None and result.batch_metrics == {}
    assert result.retrain is None and "no labels" in result.note
    metrics = client.get_run(result.run_id).data.metrics
    assert not any(k.startswith(("batch_roc", "registered_")) for k in metrics)
    assert len(roots(client, "pipeline")) == pipelines_before


def test_batch_missing_a_feature_column_is_a_clear_error(trained, tmp_path, capsys):
    client = MlflowClient()
    monitors_before = len(roots(client, "monitor"))
    from mlcycle.core.datasets import generate_sessions

    path = tmp_path / "batch.csv"
    generate_sessions(300, 5, 0.0).drop(columns=["price"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks feature column\(s\) \['price'\]"):
        monitoring.monitor(monitor_cfg(f"batch.path={path}"))
    code = monitor_cmd.main([f"batch.path={path}", *BATCH])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: {path}: batch lacks feature column(s) ['price'] that the model needs; expected: "
                   + ", ".join(trained[1].state.schema.features)]
    assert len(roots(client, "monitor")) == monitors_before  # no run was created
    assert client.search_runs([r.info.experiment_id for r in roots(client, "pipeline")][:1], filter_string="attributes.status = 'RUNNING'") == []


def test_cli_exit_codes_and_table(trained, tmp_path, capsys):
    # a labelled CSV file without drift: exit 0; drifted: 11 (decay), or 0 with exit_codes off
    from mlcycle.core.datasets import generate_sessions

    ok_path, bad_path = tmp_path / "ok.csv", tmp_path / "drifted.parquet"
    generate_sessions(1500, 2004, 0.0).to_csv(ok_path, index=False)
    generate_sessions(1500, 2005, 2.0).to_parquet(bad_path, index=False)
    assert monitor_cmd.main([f"batch.path={ok_path}", *BATCH]) == 0
    out = capsys.readouterr().out
    assert "verdict: OK (exit code 0)" in out and "product_category" in out
    [mon] = [r for r in roots(MlflowClient(), "monitor") if r.info.run_id in out]
    assert mon.info.run_name == "monitor-v1-mlcycle-ecommerce"
    assert re.search(rf"^  browse: make .*ui, then http://127\.0\.0\.1:5000/#/experiments/{mon.info.experiment_id}/runs/"
                     rf"{mon.info.run_id}/artifacts/report\.html\?workflowType=machine_learning$", out, re.M)
    assert monitor_cmd.main([f"batch.path={bad_path}", "monitor.retrain_on=never", *BATCH]) == 11
    assert "verdict: DECAY (exit code 11)" in capsys.readouterr().out
    assert monitor_cmd.main([f"batch.path={bad_path}", "monitor.retrain_on=never", "monitor.exit_codes=false", *BATCH]) == 0
    assert monitor_cmd.main(["monitor.retrain_on=sometimes"]) == 2
    assert "monitor.retrain_on=sometimes" in capsys.readouterr().err


def test_retrain_command_for_a_monitoring_run(trained, capsys):
    client = MlflowClient()
    result = monitoring.monitor(monitor_cfg("batch.seed=2006", "batch.drift=1", "monitor.retrain_on=never", "monitor.report=false"))
    assert result.verdict == "decay" and retraining.triggered_runs(client, result.run_id) == []
    args = [result.run_id, 'monitor.retrain_overrides=["tune.n_trials=2"]', "monitor.retrain_reference_fraction=0.5"]
    assert retrain_cmd.main(args) == 0
    assert "mlcycle retrain: root run" in capsys.readouterr().out
    (run,) = retraining.triggered_runs(client, result.run_id)
    assert run.data.params["tune.n_trials"] == "2"
    assert run.data.tags["mlcycle.retrain_rows"] == "1500 reference + 1500 batch"
    ingest = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and tags.`mlcycle.stage` = 'ingest'",
    )[0]
    assert ingest.data.metrics["rows_in"] == 3000
    assert retrain_cmd.main([result.run_id]) == 2
    assert "already triggered" in capsys.readouterr().err
    assert retrain_cmd.main(["0123456789abcdef"]) == 2


def test_the_stored_batch_is_what_was_monitored(trained):
    result = monitoring.monitor(monitor_cfg("batch.seed=2007", "batch.n_rows=200", "monitor.retrain_on=never", "monitor.report=false"))
    run = MlflowClient().get_run(result.run_id)
    local = mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/{retraining.BATCH_ARTIFACT}")
    stored = pd.read_parquet(local)
    assert len(stored) == 200 and "purchased" in stored.columns
    assert Path(local).exists()


def test_mlflow_run_monitor_entry_point_is_the_monitoring_run(trained):
    """`mlflow run -e monitor`: the run mlflow creates is the monitoring run, it ends
    FINISHED on a decay verdict, and the retrain is a NEW root run linked to it."""
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT, subprocess_env

    root, _ = trained
    env = subprocess_env(os.environ["MLFLOW_TRACKING_URI"], root)
    overrides = "batch.drift=2 batch.seed=2008 batch.n_rows=600 monitor.model_version=1 monitor.report=false"
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "-e", "monitor", "--env-manager", "local",
         "--experiment-name", "mlcycle", "-P", f"overrides={overrides}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verdict: DECAY (exit code 0)" in proc.stdout
    client = MlflowClient()
    (mon,) = [r for r in roots(client, "monitor") if r.data.tags.get("mlflow.source.type") == "PROJECT"]
    assert mon.info.status == "FINISHED" and mon.data.tags["mlcycle.verdict"] == "decay"
    (retrain_run,) = retraining.triggered_runs(client, mon.info.run_id)
    assert retrain_run.info.run_id != mon.info.run_id
    assert retrain_run.info.status == "FINISHED" and "mlflow.parentRunId" not in retrain_run.data.tags
    assert mon.data.tags["mlcycle.retrain_run_id"] == retrain_run.info.run_id


@pytest.mark.parametrize(
    ("data", "metric", "prediction_kind"),
    [("diabetes", "rmse", "numeric"), ("wine", "roc_auc", "categorical")],
)
def test_regression_and_multiclass_models(tiny_cfg, tmp_path, data, metric, prediction_kind):
    """Bundled datasets through the whole loop: the data itself is ok; the same rows with
    shuffled labels are decay (rmse by its relative tolerance only: an absolute 0.05 is
    nothing in the target's units); prediction drift for a multiclass model compares
    predicted labels."""
    import numpy as np

    from mlcycle.core.datasets import load_bundled

    pipeline.run(tiny_cfg(f"data={data}", "evaluate.plots=false"))
    frame = load_bundled(data)
    same, shuffled = tmp_path / "same.csv", tmp_path / "shuffled.csv"
    frame.to_csv(same, index=False)
    frame.assign(target=np.random.default_rng(0).permutation(frame["target"].to_numpy())).to_csv(shuffled, index=False)
    common = [f"monitor.model_name=mlcycle-{data}", "monitor.report=false", "monitor.retrain_on=never"]

    ok = monitoring.monitor(monitor_cfg(f"batch.path={same}", *common))
    assert ok.verdict == "ok", (ok.decay, ok.drifted_share)
    assert ok.decay.metric == metric and ok.prediction.kind == prediction_kind
    bad = monitoring.monitor(monitor_cfg(f"batch.path={shuffled}", *common))
    assert bad.verdict == "decay" and bad.decay.metric == metric and bad.decay.worsening > 0
    assert bad.drifted_share == 0.0  # the features did not move: only the labels did


def test_a_failing_retrain_keeps_the_verdict_and_can_be_retried(trained, capsys):
    client = MlflowClient()
    breaks_training = 'monitor.retrain_overrides=["model.classifier.params.dual=true"]'  # every trial's fit raises
    code = monitor_cmd.main(
        ["batch.drift=2", "batch.seed=2009", "monitor.report=false", "monitor.retrain_on=decay", breaks_training, *BATCH]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "verdict: DECAY" in out and "retrain: FAILED" in out
    # the retrain's own one line (all its trials failed: a TuningFailed); exit 1, not its 2
    assert err.strip().splitlines()[-1].startswith("error: retrain: all 3 tuning trials failed; first error: ")
    (mon,) = [r for r in roots(client, "monitor") if r.data.tags.get("mlcycle.batch_source", "").endswith("seed=2009&drift=2.0")]
    assert mon.info.status == "FINISHED" and mon.data.tags["mlcycle.verdict"] == "decay"
    assert mon.data.tags["mlcycle.retrain"] == "failed"
    (failed,) = retraining.triggered_runs(client, mon.info.run_id)
    assert failed.info.status == "FAILED" and "tuning trials failed" in failed.data.tags["mlcycle.error"]
    assert mon.data.tags["mlcycle.retrain_run_id"] == failed.info.run_id
    experiment = client.get_experiment_by_name("mlcycle").experiment_id
    assert client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'") == []
    # a failed retrain does not count: retrying is allowed, once
    assert retrain_cmd.main([mon.info.run_id, 'monitor.retrain_overrides=["tune.n_trials=2"]']) == 0
    assert [r.info.status for r in retraining.triggered_runs(client, mon.info.run_id)] == ["FAILED", "FINISHED"]
    assert retrain_cmd.main([mon.info.run_id]) == 2


def test_cli_says_the_verdict_first_then_the_retrain_as_it_runs(trained):
    """One output stream, as a terminal or a log file sees it: the table and the verdict come
    before the retrain starts, the retrain's own lines after "retraining:", its outcome last.
    The decay line says "worse by" with a negative share (never "worse by -x")."""
    import os
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    root, _ = trained
    retrain_overrides = 'monitor.retrain_overrides=["tune.n_trials=2"]'
    proc = subprocess.run(
        [sys.executable, "-m", "mlcycle", "monitor", "batch.drift=2", "batch.seed=2010", "batch.n_rows=600",
         "monitor.model_version=1", "monitor.report=false", "monitor.retrain_on=decay", retrain_overrides],
        env=subprocess_env(os.environ["MLFLOW_TRACKING_URI"], root), cwd=root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=900,
    )
    assert proc.returncode == 11, proc.stdout[-3000:]
    lines = proc.stdout.splitlines()

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    table, verdict = first("  feature "), first("verdict: DECAY")
    registered, outcome = first("Created version "), first("retrain: root run ")  # MLflow's line, from the retrain
    assert table < verdict < registered < outcome == len(lines) - 1, proc.stdout
    assert verdict < first("monitoring run ") < first("retraining: ") < registered
    decay = next(line for line in lines[:verdict] if line.startswith("  roc_auc: registered"))
    assert re.search(r"batch \d\.\d{4}, worse by \d\.\d{4} \(-\d+\.\d%\)", decay), decay
