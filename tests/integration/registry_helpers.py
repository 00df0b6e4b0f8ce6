"""Helpers for the registry tests: one real pipeline run, then cheap model variants.

A variant is a real mlcycle Pipeline (the run's cleaning + features, a LogisticRegression
with another C) logged and registered like the pipeline does, tagged with the base run's
test split so `mlcycle promote` compares every version on the same rows.
"""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mlcycle import pipeline
from mlcycle.core.evaluation import compute_metrics, predict_all
from mlcycle.core.modeling import full_pipeline
from mlcycle.tracking import model_io, registration, registry

NAME = "mlcycle-ecommerce"


def base_run(tiny_cfg, *extra):
    """A tiny pipeline run: registers version 1 (champion, since there was none)."""
    return pipeline.run(tiny_cfg(*extra))


def fit_variant(result, C: float):
    state = result.state
    X = state.train[list(state.schema.features)]
    model = full_pipeline(state.preprocessor, LogisticRegression(C=C, max_iter=300))
    return model.fit(X, state.train[state.schema.target])


def metrics_on_test(result, model) -> dict[str, float]:
    state = result.state
    test = state.splits.test
    y_pred, proba = predict_all(model, test[list(state.schema.features)], state.schema.task)
    return compute_metrics(state.schema.task, test[state.schema.target], y_pred, proba, tuple(model.classes_))


def register_variant(result, model, name: str = NAME) -> str:
    """Log and register ``model`` like the register stage; no alias. Returns the version."""
    state = result.state
    client = MlflowClient()
    base_tags = client.get_model_version(NAME, "1").tags
    example = state.splits.train[list(state.schema.features)].head(5)
    with mlflow.start_run(experiment_id=client.get_run(result.run_id).info.experiment_id, run_name="variant"):
        info = model_io.log_model(model, example, state.schema)
    tags = {
        "task": state.schema.task.value,
        registry.TAG_PRIMARY_METRIC: "roc_auc",
        registry.TAG_TEST_DATA: base_tags[registry.TAG_TEST_DATA],
        **{f"test_{k}": f"{v:.6g}" for k, v in metrics_on_test(result, model).items()},
        model_io.MANIFEST_TAG: model_io.manifest(info.model_uri),
        registration.STATUS_TAG: registration.COMPLETE,
    }
    return registration.create_version(client, name, info.model_uri, tags)


# a weak pipeline model: one depth-1 tree on a random feature
WEAK = ("model=random_forest", "tune.n_trials=1", "model.classifier.params.n_estimators=1",
        "model.classifier.search_space.max_depth.high=1", "model.classifier.search_space.max_depth.low=1",
        "model.classifier.search_space.max_features.low=0.05", "model.classifier.search_space.max_features.high=0.05",
        "evaluate.plots=false")
NO_GUARDS = ("registry.gate.guard_metrics.log_loss=null", "registry.gate.guard_metrics.brier=null")


def fit_flipped(result):
    """A model trained on inverted labels: ranks backwards, ROC AUC well below 0.5."""
    state = result.state
    X = state.train[list(state.schema.features)]
    y = state.train[state.schema.target]
    flipped = y.map({state.schema.classes[0]: state.schema.classes[1], state.schema.classes[1]: state.schema.classes[0]})
    return full_pipeline(state.preprocessor, LogisticRegression(max_iter=300)).fit(X, flipped)
