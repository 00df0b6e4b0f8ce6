"""Monitoring runs (the MLflow side of ``core.drift``).

``monitor(cfg)``: the watched model version -> its reference data through lineage -> drift
and performance on a new batch (``Findings``) -> a verdict (told to the caller at once),
logged as its own root run (run kind ``monitor``, its page: ``page.py``) -> when the verdict
reaches ``monitor.retrain_on``, ``retrain.retrain``, and the page again with the run it made.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mlcycle.config.load import flatten
from mlcycle.config.monitor import MonitorAppConfig, MonitorConfig
from mlcycle.config.schema import Task
from mlcycle.core import drift
from mlcycle.core.data import CATEGORICAL, NUMERIC, digest
from mlcycle.core.evaluation import compute_metrics, greater_is_better, predict_all, primary_metric
from mlcycle.core.tables import read_table, resolve_path
from mlcycle.errors import ConfigError
from mlcycle.monitoring import page, reference
from mlcycle.monitoring.retrain import (
    MONITORED_MODEL_TAG,
    MONITORED_VERSION_TAG,
    RETRAIN_RUN_TAG,
    RETRAIN_TAG,
    VERDICT_TAG,
    RetrainOutcome,
    retrain,
)
from mlcycle.pipeline import sigterm_raises
from mlcycle.report import REPORT_ARTIFACT
from mlcycle.tracking import hygiene, ui
from mlcycle.tracking.artifacts import log_artifact_dict, log_frames, log_text
from mlcycle.tracking.model_io import load_model
from mlcycle.tracking.remote import check_tracking_store, resolve_tracking_uri
from mlcycle.tracking.runs import KIND_MONITOR, MAX_TAG_LENGTH, root_run

log = logging.getLogger(__name__)

EXIT_CODES = {drift.OK: 0, drift.DRIFT: 10, drift.DECAY: 11}  # errors are 1 and 2


@dataclass(frozen=True)
class Findings:
    """What comparing a batch with the watched model's reference data found."""

    model: reference.ModelRef
    reference: reference.Reference
    batch_source: str
    batch_digest: str
    batch: pd.DataFrame  # the batch aligned to the reference's columns, labels when it had them
    labelled_rows: int
    features: list[drift.FeatureDrift]
    drifted_share: float
    prediction: drift.FeatureDrift | None
    decay: drift.Decay | None
    batch_metrics: dict[str, float]
    verdict: str
    scores: tuple[np.ndarray, np.ndarray, str]  # model output on the reference's test split and the batch, kind
    note: str  # why a check (or the retrain) did not happen, when it did not

    @property
    def batch_rows(self) -> int:
        return len(self.batch)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass(frozen=True)
class MonitorResult(Findings):
    run_id: str = ""
    experiment_id: str = ""
    tracking_uri: str = ""
    retrain: RetrainOutcome | None = None
    retrain_error: BaseException | None = None  # the triggered retrain failed with this


def monitor(
    cfg: MonitorAppConfig,
    *,
    on_verdict: Callable[[Findings], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> MonitorResult:
    """Compare a new batch with the watched model's reference data; log and act on it.

    ``on_verdict(findings)`` hears the verdict as soon as it is known, before the monitoring
    run is logged and before any retrain; ``say`` gets the lines that follow (the monitoring
    run, the retrain starting), in order, while the work goes on.
    """
    say = say or log.info
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)  # fail in seconds, before any work
    experiment_id = hygiene.open_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location, "monitor")
    client = MlflowClient(uri)
    m = cfg.monitor
    found = examine(cfg, client)
    if on_verdict is not None:
        on_verdict(found)
    triggered = drift.at_least(found.verdict, m.retrain_on.value)
    skipped = "retrain skipped: the batch has no labels" if triggered and found.labelled_rows == 0 else ""
    drawn = page.plots(found) if m.report else None
    run_id = log_monitoring_run(cfg, experiment_id, found, drawn, page.planned(m, found, skipped))
    result = MonitorResult(**vars(found), run_id=run_id, experiment_id=experiment_id, tracking_uri=uri)
    say(f"monitoring run {run_id}" + (" (report.html in its artifacts)" if m.report else ""))
    if where := ui.browse(uri, ui.run_path(experiment_id, run_id, REPORT_ARTIFACT if m.report else None)):
        say(f"  browse: {where}")
    if skipped:
        client.set_tag(run_id, RETRAIN_TAG, skipped)
        return replace(result, note=skipped)
    if not triggered:
        return result
    try:
        outcome = retrain(cfg, run_id, announce=say)
    except Exception as exc:  # the verdict stands; the caller reports the failed action
        log.debug("retrain failed", exc_info=True)
        result = replace(result, retrain_error=exc)
        action = page.failed(exc, client.get_run(run_id).data.tags.get(RETRAIN_RUN_TAG))
    else:
        result = replace(result, retrain=outcome)
        action = page.finished(outcome, found.model.name)
    if drawn is not None:  # the page again, now with the run the retrain made
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "report.html"
                path.write_text(page.html(m, found, run_id, experiment_id, drawn, action), encoding="utf-8")
                client.log_artifact(run_id, str(path))
        except Exception as exc:  # the page of the verdict is there already
            log.warning("could not rewrite report.html of monitoring run %s: %s", run_id, exc)
    return result


def examine(cfg: MonitorAppConfig, client: MlflowClient) -> Findings:
    """The watched version, its reference data, the batch, and what they say together."""
    m = cfg.monitor
    model = reference.resolve_model(client, m.model_name, m.model_alias, m.model_version)
    ref = reference.load_reference(client, model)
    schema = ref.schema
    unknown = [c for c in m.ignore_columns if c not in schema.features]
    if unknown:
        raise ConfigError(f"monitor.ignore_columns names unknown feature(s) {unknown}; features: {list(schema.features)}")

    raw, source = load_batch(cfg, ref)
    features, labels = drift.align_batch(raw, ref.kinds, schema.target, source)
    y = drift.align_labels(labels, schema.task.value, schema.classes, source, schema.target) if labels is not None else None

    thresholds = drift.DriftThresholds(psi=m.psi_threshold, alpha=m.alpha, n_bins=m.n_bins, max_categories=m.max_categories)
    watched = {c: k for c, k in ref.kinds.items() if c not in m.ignore_columns}
    results = drift.data_drift(ref.fitted_rows, features, watched, thresholds)
    share = drift.drifted_share(results)

    fitted_model = load_model(model.uri).model  # the one safe loader
    # Reference scores on the test split: out-of-sample, like the batch's (in-sample scores
    # of the fitted rows are over-confident and would look like drift).
    ref_scores, score_kind = _scores(fitted_model, ref.splits.test[list(schema.features)], schema.task)
    batch_scores, _ = _scores(fitted_model, features[list(schema.features)], schema.task)
    prediction = drift.prediction_drift(ref_scores, batch_scores, score_kind, thresholds)

    batch_metrics, decay, labelled_rows, note = _performance(client, m, model, ref, fitted_model, features, y)
    verdict = drift.verdict(
        share, prediction, decay, max_drifted_share=m.max_drifted_share, max_prediction_psi=m.max_prediction_psi, alpha=m.alpha
    )
    return Findings(
        model=model, reference=ref, batch_source=source, batch_digest=digest(raw),
        batch=features.assign(**{schema.target: y}) if y is not None else features, labelled_rows=labelled_rows,
        features=results, drifted_share=share, prediction=prediction, decay=decay, batch_metrics=batch_metrics,
        verdict=verdict, scores=(ref_scores, batch_scores, score_kind), note=note,
    )


def load_batch(cfg: MonitorAppConfig, ref: reference.Reference) -> tuple[pd.DataFrame, str]:
    """The batch as a raw frame and a description of where it came from."""
    batch = cfg.batch
    if batch.path:
        path = resolve_path(batch.path)
        return read_table(path), str(path)
    # The generator's sessions fit models trained on them, or on data derived from them (a
    # retrain's reference + batch file); for any other model align_batch names the columns
    # the batch lacks.
    from mlcycle.core.datasets import generate_sessions

    frame = generate_sessions(batch.n_rows, batch.seed, batch.drift)
    if not batch.labelled:
        frame = frame.drop(columns=[ref.schema.target], errors="ignore")
    return frame, f"generator:ecommerce?n_rows={batch.n_rows}&seed={batch.seed}&drift={batch.drift}"


def _scores(model, X: pd.DataFrame, task: Task) -> tuple[np.ndarray, str]:
    """What the model outputs, on a scale to compare: P(positive class) for binary,
    the predicted value for regression, the predicted label for multiclass."""
    if task is Task.binary:
        return model.predict_proba(X)[:, 1], NUMERIC
    if task is Task.regression:
        return np.asarray(model.predict(X), dtype=float), NUMERIC
    return np.asarray(model.predict(X)).astype(str), CATEGORICAL


def _performance(client: MlflowClient, m: MonitorConfig, model: reference.ModelRef, ref: reference.Reference,
                 fitted_model, features: pd.DataFrame, y):
    """Metrics on the labelled rows and, when enough of them, the decay check."""
    if y is None:
        return {}, None, 0, ""
    mask = y.notna().to_numpy()
    labelled = int(mask.sum())
    schema = ref.schema
    X, yl = features.loc[mask, list(schema.features)], np.array(y[mask].tolist())
    y_pred, proba = predict_all(fitted_model, X, schema.task)
    try:
        metrics = compute_metrics(schema.task, yl, y_pred, proba, schema.classes)
    except ValueError as exc:  # e.g. ROC AUC with a single class among the labels
        return {}, None, labelled, f"performance not measured on {labelled} labelled rows: {exc}"
    configured = m.decay_metric if m.decay_metric != "auto" else ref.config.get("evaluate", {}).get("primary_metric", "auto")
    try:
        metric = primary_metric(configured, schema.task)
    except ValueError as exc:
        raise ConfigError(f"monitor.decay_metric: {exc}") from None
    baseline = model.registered_metric(metric)
    if baseline is None:
        baseline = client.get_run(ref.root_run_id).data.metrics.get(f"test_{metric}")
    if baseline is None:
        return metrics, None, labelled, f"no registered test_{metric} to compare with"
    if labelled < m.min_labelled_rows:
        return metrics, None, labelled, f"{labelled} labelled rows < monitor.min_labelled_rows={m.min_labelled_rows}: no decay verdict"
    if metric not in metrics:
        return metrics, None, labelled, f"{metric} not measurable on this batch"
    decay = drift.performance_decay(
        metric, baseline, metrics[metric], greater_is_better(metric), m.max_metric_drop, m.max_relative_drop
    )
    return metrics, decay, labelled, ""


def log_monitoring_run(cfg: MonitorAppConfig, experiment_id: str, found: Findings, drawn: dict[str, str] | None,
                       action: page.Action) -> str:
    """The monitoring run: verdict and lineage as tags, drift per feature as metrics, the
    batch, drift.json and (with ``drawn``, its plots) the report as artifacts."""
    m, model, ref = cfg.monitor, found.model, found.reference
    tags = {
        VERDICT_TAG: found.verdict,
        MONITORED_MODEL_TAG: model.name,
        MONITORED_VERSION_TAG: model.version,
        "mlcycle.reference_run_id": ref.root_run_id,
        "mlcycle.reference_digest": ref.data_digest,
        "mlcycle.batch_source": found.batch_source[:MAX_TAG_LENGTH],
        "mlcycle.batch_digest": found.batch_digest,
        "mlcycle.drifted_features": ",".join(r.feature for r in found.features if r.drifted),
        **dict(cfg.mlflow.tags),
    }
    name = cfg.mlflow.run_name or f"monitor-v{model.version}-{model.name}"  # what differs first
    with sigterm_raises(), root_run(experiment_id, name, tags, kind=KIND_MONITOR) as run:
        run.log.log_params(flatten(m, "monitor"))
        run.log.log_params({
            "model_uri": model.uri, "model_alias": model.alias or "", "batch_rows": found.batch_rows,
            "labelled_rows": found.labelled_rows, "reference_rows": len(ref.fitted_rows),
        })
        run.log.log_metrics({k: v for k, v in _metrics(found).items() if v is not None and np.isfinite(v)})
        run.log.flush()
        log_artifact_dict(
            {
                "verdict": found.verdict,
                "model": {"name": model.name, "version": model.version, "uri": model.uri},
                "reference_run_id": ref.root_run_id,
                "batch": {"source": found.batch_source, "rows": found.batch_rows, "labelled_rows": found.labelled_rows},
                "drifted_share": found.drifted_share,
                "features": [r.as_dict() for r in found.features],
                "prediction": found.prediction.as_dict() if found.prediction else None,
                "decay": asdict(found.decay) if found.decay else None,
                "batch_metrics": found.batch_metrics,
                "thresholds": flatten(m),
            },
            "drift.json",
        )
        log_frames({"batch": found.batch}, "batch")
        if drawn is not None:
            log_text(page.html(m, found, run.run_id, experiment_id, drawn, action), "report.html")
        return run.run_id


def _metrics(found: Findings) -> dict[str, float | None]:
    metrics = {
        "drifted_share": found.drifted_share, "drifted_features": sum(r.drifted for r in found.features),
        "labelled_rows": found.labelled_rows, "batch_rows": found.batch_rows,
    }
    for r in found.features:
        metrics |= {f"psi.{r.feature}": r.psi, f"p_value.{r.feature}": r.p_value}
    if found.prediction is not None:
        metrics |= {"prediction_psi": found.prediction.psi, "prediction_p_value": found.prediction.p_value}
    metrics |= {f"batch_{k}": v for k, v in found.batch_metrics.items()}
    for k in found.batch_metrics:
        if (registered := found.model.registered_metric(k)) is not None:
            metrics[f"registered_{k}"] = registered
    if found.decay is not None:
        metrics[f"{found.decay.metric}_worsening"] = found.decay.worsening
    return metrics
