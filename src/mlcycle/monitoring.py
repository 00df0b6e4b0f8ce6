"""Monitoring runs and the retraining they trigger (the MLflow side of ``drift.py``).

``monitor(cfg)``: the watched model version -> its reference data through lineage -> drift
and performance on a new batch -> a verdict, logged as its own root run (run kind
``monitor``) -> when the verdict reaches ``monitor.retrain_on``, ``retrain``.

``retrain(cfg, monitoring_run_id)``: the reference data plus the monitoring run's labelled
batch, trained with the watched model's own resolved config as a NEW root run tagged
``mlcycle.triggered_by=<monitoring run>``. Never twice for the same monitoring run. Whether
the new version becomes champion is the registry's decision; this module only reads the
aliases before and after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle import drift, reference, tracking
from mlcycle.config import MonitorAppConfig, Task, flatten, from_resolved
from mlcycle.data import CATEGORICAL, NUMERIC, digest, read_table, resolve_path
from mlcycle.errors import ConfigError, DataError, LineageError, MlcycleError
from mlcycle.remote import check_tracking_store

log = logging.getLogger(__name__)

KIND = "monitor"
VERDICT_TAG = "mlcycle.verdict"
TRIGGERED_BY_TAG = "mlcycle.triggered_by"
RETRAIN_RUN_TAG = "mlcycle.retrain_run_id"
EXIT_CODES = {drift.OK: 0, drift.DRIFT: 10, drift.DECAY: 11}  # errors are 1 and 2
BATCH_ARTIFACT = "batch/batch.parquet"


@dataclass(frozen=True)
class RetrainOutcome:
    run_id: str
    version: str | None  # the registered version the retrain produced
    champion_before: str | None
    champion_after: str | None
    data_rows: int

    @property
    def promoted(self) -> bool:
        return self.version is not None and self.champion_after == self.version != self.champion_before


@dataclass(frozen=True)
class MonitorResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    verdict: str
    model: reference.ModelRef
    batch_source: str
    batch_rows: int
    labelled_rows: int
    features: list[drift.FeatureDrift]
    drifted_share: float
    prediction: drift.FeatureDrift | None
    decay: drift.Decay | None
    batch_metrics: dict[str, float] = field(default_factory=dict)
    retrain: RetrainOutcome | None = None
    retrain_error: BaseException | None = None  # the triggered retrain failed with this
    note: str = ""  # why a retrain did not happen, when it did not

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


# --------------------------------------------------------------------------- monitor
def monitor(cfg: MonitorAppConfig) -> MonitorResult:
    """Compare a new batch with the watched model's reference data; log and act on it."""
    _quiet()
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)  # fail in seconds, before any work
    experiment_id = tracking.prepare_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location)
    client = MlflowClient(uri)
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
    fitted = ref.fitted_rows
    results = drift.data_drift(fitted, features, watched, thresholds)
    share = drift.drifted_share(results)

    sk_model = mlflow.sklearn.load_model(model.uri)
    test_X = ref.splits.test[list(schema.features)]
    # Reference scores on the test split: out-of-sample, like the batch's (in-sample scores
    # of the fitted rows are over-confident and would look like drift).
    ref_scores, score_kind = _scores(sk_model, test_X, schema.task)
    batch_scores, _ = _scores(sk_model, features[list(schema.features)], schema.task)
    prediction = drift.prediction_drift(ref_scores, batch_scores, score_kind, thresholds)

    batch_metrics, decay, labelled_rows, perf_note = _performance(cfg, model, ref, sk_model, features, y)
    verdict = drift.verdict(
        share, prediction, decay, max_drifted_share=m.max_drifted_share, max_prediction_psi=m.max_prediction_psi, alpha=m.alpha
    )

    batch_frame = features.assign(**{schema.target: y}) if y is not None else features
    run_id = _log_monitoring_run(
        cfg, experiment_id, model, ref, source, raw, batch_frame, results, share, prediction,
        decay, batch_metrics, labelled_rows, verdict, (ref_scores, batch_scores, score_kind),
    )
    result = MonitorResult(
        run_id=run_id, experiment_id=experiment_id, tracking_uri=uri, verdict=verdict, model=model,
        batch_source=source, batch_rows=len(features), labelled_rows=labelled_rows, features=results,
        drifted_share=share, prediction=prediction, decay=decay, batch_metrics=batch_metrics, note=perf_note,
    )
    if not drift.at_least(verdict, m.retrain_on.value):
        return result
    if labelled_rows == 0:
        note = "retrain skipped: the batch has no labels"
        client.set_tag(run_id, "mlcycle.retrain", note)
        return replace(result, note=note)
    try:
        outcome = retrain(cfg, run_id)
    except Exception as exc:  # the verdict stands; the caller reports the failed action
        log.debug("retrain failed", exc_info=True)
        return replace(result, retrain_error=exc)
    return replace(result, retrain=outcome)


def _quiet() -> None:
    """No run URLs and no artifact download progress bars in the command's output."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def load_batch(cfg: MonitorAppConfig, ref: reference.Reference) -> tuple[pd.DataFrame, str]:
    """The batch as a raw frame and a description of where it came from."""
    batch = cfg.batch
    if batch.path:
        path = resolve_path(batch.path)
        return read_table(path), str(path)
    # The generator's sessions fit models trained on them, or on data derived from them (a
    # retrain's reference + batch file); for any other model align_batch names the columns
    # the batch lacks.
    from mlcycle.datasets import generate_sessions

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


def _performance(cfg, model: reference.ModelRef, ref: reference.Reference, sk_model, features, y):
    """Metrics on the labelled rows and, when enough of them, the decay check."""
    from mlcycle.evaluation import compute_metrics, greater_is_better, predict_all, primary_metric

    if y is None:
        return {}, None, 0, ""
    mask = y.notna().to_numpy()
    labelled = int(mask.sum())
    schema, m = ref.schema, cfg.monitor
    X, yl = features.loc[mask, list(schema.features)], np.array(y[mask].tolist())
    y_pred, proba = predict_all(sk_model, X, schema.task)
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
        root_metrics = MlflowClient().get_run(ref.root_run_id).data.metrics
        baseline = root_metrics.get(f"test_{metric}")
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


def _log_monitoring_run(
    cfg, experiment_id, model, ref, source, raw, batch_frame, results, share, prediction, decay,
    batch_metrics, labelled_rows, verdict, scores,
) -> str:
    m = cfg.monitor
    tags = {
        tracking.KIND_TAG: KIND,
        VERDICT_TAG: verdict,
        "mlcycle.monitored_model": model.name,
        "mlcycle.monitored_version": model.version,
        "mlcycle.reference_run_id": ref.root_run_id,
        "mlcycle.reference_digest": ref.data_digest,
        "mlcycle.batch_source": source[:5000],
        "mlcycle.batch_digest": digest(raw),
        "mlcycle.drifted_features": ",".join(r.feature for r in results if r.drifted),
        **dict(cfg.mlflow.tags),
    }
    name = cfg.mlflow.run_name or f"monitor-{model.name}-v{model.version}"
    from mlcycle.pipeline import _sigterm_raises

    with _sigterm_raises(), tracking.root_run(experiment_id, name, tags) as run:
        run.log.log_params(flatten(m, "monitor"))
        run.log.log_params(
            {
                "model_uri": model.uri,
                "model_alias": model.alias or "",
                "batch_rows": len(batch_frame),
                "labelled_rows": labelled_rows,
                "reference_rows": len(ref.fitted_rows),
            }
        )
        metrics = {
            "drifted_share": share,
            "drifted_features": sum(r.drifted for r in results),
            "labelled_rows": labelled_rows,
            "batch_rows": len(batch_frame),
        }
        for r in results:
            metrics[f"psi.{r.feature}"] = r.psi
            metrics[f"p_value.{r.feature}"] = r.p_value
        if prediction is not None:
            metrics |= {"prediction_psi": prediction.psi, "prediction_p_value": prediction.p_value}
        metrics |= {f"batch_{k}": v for k, v in batch_metrics.items()}
        for k in batch_metrics:
            if (registered := model.registered_metric(k)) is not None:
                metrics[f"registered_{k}"] = registered
        if decay is not None:
            metrics[f"{decay.metric}_worsening"] = decay.worsening
        run.log.log_metrics({k: v for k, v in metrics.items() if v is not None and np.isfinite(v)})
        run.log.flush()
        tracking.log_artifact_dict(
            {
                "verdict": verdict,
                "model": {"name": model.name, "version": model.version, "uri": model.uri},
                "reference_run_id": ref.root_run_id,
                "batch": {"source": source, "rows": len(batch_frame), "labelled_rows": labelled_rows},
                "drifted_share": share,
                "features": [r.as_dict() for r in results],
                "prediction": prediction.as_dict() if prediction else None,
                "decay": asdict(decay) if decay else None,
                "batch_metrics": batch_metrics,
                "thresholds": {k: v for k, v in flatten(m).items()},
            },
            "drift.json",
        )
        tracking.log_frames({"batch": batch_frame}, "batch")
        if m.report:
            html = _report(cfg, model, ref, source, batch_frame, results, share, prediction, decay, batch_metrics, verdict, scores)
            mlflow.log_text(html, "report.html")
        return run.run_id


def _report(cfg, model, ref, source, batch_frame, results, share, prediction, decay, batch_metrics, verdict, scores) -> str:
    from mlcycle import monitor_report as report

    fitted = ref.fitted_rows
    kinds = ref.kinds
    plots = {r.feature: report.distribution_plot(r.feature, kinds[r.feature], fitted[r.feature], batch_frame[r.feature]) for r in results}
    ref_scores, batch_scores, score_kind = scores
    plots["prediction"] = report.distribution_plot("prediction (model output)", score_kind, pd.Series(ref_scores), pd.Series(batch_scores))
    m = cfg.monitor
    summary = [
        ("model", f"{model.name} version {model.version}" + (f" (@{model.alias})" if model.alias else "")),
        ("reference", f"root run {ref.root_run_id}, {len(fitted)} rows ({ref.data_source})"),
        ("batch", f"{source}, {len(batch_frame)} rows"),
        ("drifted features", f"{sum(r.drifted for r in results)} of {len(results)} ({share:.0%}; threshold {m.max_drifted_share:.0%})"),
    ]
    if decay is not None:
        summary.append(
            (f"{decay.metric}", f"registered {decay.baseline:.4f}, batch {decay.current:.4f}, worse by {decay.worsening:.4f} "
             f"(decay at {tolerance(decay.metric, m)})")
        )
    metrics = {k: (model.registered_metric(k), v) for k, v in batch_metrics.items()}
    return report.render(
        title=f"Monitoring {model.name} v{model.version}", summary=summary, verdict=verdict, features=results,
        prediction=prediction, decay=decay, metrics=metrics, plots=plots,
    )


def tolerance(metric: str, m) -> str:
    """The decay rule for ``metric`` in words, e.g. "> 0.05 or > 10 %"."""
    rules = []
    if m.max_metric_drop is not None and metric not in drift.SCALE_DEPENDENT:
        rules.append(f"> {m.max_metric_drop:g}")
    if m.max_relative_drop is not None:
        rules.append(f"> {m.max_relative_drop:.0%}")
    return " or ".join(rules) if rules else "never"


# --------------------------------------------------------------------------- retrain
def retrain(cfg: MonitorAppConfig, monitoring_run_id: str) -> RetrainOutcome:
    """Train on reference + the monitoring run's labelled batch, as a new root run.

    Refuses when the monitoring run already triggered a retrain that did not fail.
    """
    from mlcycle import pipeline
    from mlcycle.registry import alias_version

    _quiet()
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    check_tracking_store(uri, cfg.mlflow.connect_timeout)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        mon = client.get_run(monitoring_run_id)
    except MlflowException:
        raise LineageError(f"monitoring run {monitoring_run_id} not found in {uri}") from None
    if mon.data.tags.get(tracking.KIND_TAG) != KIND:
        raise LineageError(f"run {monitoring_run_id} is not a monitoring run (tag {tracking.KIND_TAG}={KIND})")
    earlier = triggered_runs(client, monitoring_run_id)
    live = [r for r in earlier if r.info.status in ("RUNNING", "FINISHED", "SCHEDULED")]
    if live:
        raise MlcycleError(
            f"monitoring run {monitoring_run_id} already triggered run {live[0].info.run_id} "
            f"({live[0].info.status}); one retrain per monitoring run"
        )
    tags = mon.data.tags
    name, version = tags["mlcycle.monitored_model"], tags["mlcycle.monitored_version"]
    model = reference.resolve_model(client, name, None, version)
    ref = reference.load_reference(client, model)
    schema = ref.schema

    with tempfile.TemporaryDirectory() as tmp:
        try:
            batch = pd.read_parquet(client.download_artifacts(monitoring_run_id, BATCH_ARTIFACT, tmp))
        except (MlflowException, OSError):
            raise LineageError(f"monitoring run {monitoring_run_id} has no {BATCH_ARTIFACT} artifact") from None
    if schema.target not in batch.columns or batch[schema.target].notna().sum() == 0:
        raise DataError(f"monitoring run {monitoring_run_id}: the batch has no labels ({schema.target!r}); nothing to retrain on")
    batch = drift.align_batch(batch, ref.kinds, schema.target, "monitoring batch")[0].assign(
        **{schema.target: drift.align_labels(batch[schema.target], schema.task.value, schema.classes, "monitoring batch", schema.target)}
    )
    batch = batch[batch[schema.target].notna()]
    columns = [*schema.features, schema.target]
    kept = ref.all_rows[columns]
    if cfg.monitor.retrain_reference_fraction < 1:  # give the new data more weight
        kept = kept.sample(frac=cfg.monitor.retrain_reference_fraction, random_state=cfg.seed)
    combined = pd.concat([kept, batch[columns]], ignore_index=True)
    if schema.task is not Task.regression and all(isinstance(c, int | np.integer) for c in schema.classes):
        combined[schema.target] = combined[schema.target].astype(int)
    out_dir = Path(cfg.paths.data_dir) / "retrain"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"{monitoring_run_id}.parquet"
    combined.to_parquet(data_path, index=False)

    experiment = client.get_experiment(mon.info.experiment_id)
    resolved = dict(ref.config)
    resolved["data"] = {
        **resolved.get("data", {}),
        "source": "file",
        "path": str(data_path),
        "drop_columns": [],
        "column_types": ref.kinds,
        "task": schema.task.value,
    }
    resolved["registry"] = {**resolved.get("registry", {}), "model_name": name}
    resolved["paths"] = asdict(cfg.paths)
    model_name = resolved.get("model", {}).get("name", "model")
    resolved["mlflow"] = {
        **asdict(cfg.mlflow),
        "experiment_name": experiment.name,
        "run_name": f"retrain-{resolved['data'].get('name', 'data')}-{model_name}",
        "tags": {
            **cfg.mlflow.tags,
            TRIGGERED_BY_TAG: monitoring_run_id,
            "mlcycle.trigger_verdict": tags.get(VERDICT_TAG, ""),
            "mlcycle.retrain_rows": f"{len(kept)} reference + {len(batch)} batch",
        },
    }
    pipe_cfg = from_resolved(resolved, cfg.monitor.retrain_overrides)
    champion_alias = pipe_cfg.registry.champion_alias
    before = alias_version(client, name, champion_alias)
    log.info("retraining %s on %d reference + %d batch rows", name, len(kept), len(batch))
    with _detached_from_mlflow_run():
        try:
            result = pipeline.run(pipe_cfg)
        except BaseException:
            failed = triggered_runs(client, monitoring_run_id)
            if failed:
                client.set_tag(monitoring_run_id, RETRAIN_RUN_TAG, failed[-1].info.run_id)
            client.set_tag(monitoring_run_id, "mlcycle.retrain", "failed")
            raise
    after = alias_version(client, name, champion_alias)
    outcome = RetrainOutcome(result.run_id, result.state.registered_version, before, after, len(combined))
    for key, value in {
        RETRAIN_RUN_TAG: result.run_id,
        "mlcycle.retrain": "promoted" if outcome.promoted else "not promoted",
        "mlcycle.retrain_version": outcome.version or "",
        "mlcycle.champion_before": before or "",
        "mlcycle.champion_after": after or "",
    }.items():
        client.set_tag(monitoring_run_id, key, value)
    return outcome


def triggered_runs(client: MlflowClient, monitoring_run_id: str) -> list:
    """Root runs that ``monitoring_run_id`` triggered, oldest first, in any experiment."""
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    runs = client.search_runs(experiments, filter_string=f"tags.`{TRIGGERED_BY_TAG}` = '{monitoring_run_id}'", max_results=100)
    return sorted(runs, key=lambda r: r.info.start_time)


@contextlib.contextmanager
def _detached_from_mlflow_run() -> Iterator[None]:
    """Under ``mlflow run``, MLFLOW_RUN_ID names the monitoring run; the retrain must be a
    NEW root run, not attach to it (pipeline.run attaches to MLFLOW_RUN_ID when set)."""
    saved = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_RUN_ID"] = saved
