"""features: decide each column's encoding and build the preprocessing Pipeline."""

from __future__ import annotations

import time
from dataclasses import replace

from sklearn.base import clone

from mlcycle.config import Config
from mlcycle.features import plan_features
from mlcycle.modeling import build_preprocessor
from mlcycle.state import State
from mlcycle.tracking import ActiveRun, log_artifact_dict


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, feats = state.schema, cfg.features
    derived = dict(cfg.data.derived_features)
    plan = plan_features(
        state.train,
        numeric=schema.numeric,
        categorical=schema.categorical,
        datetime=schema.datetime,
        derived=derived,
        max_onehot_cardinality=feats.max_onehot_cardinality,
        high_cardinality_encoder=feats.high_cardinality_encoder,
        date_parts=tuple(feats.date_parts),
        scale_numeric=feats.scale_numeric,
    )
    preprocessor = preprocessor_for(schema, cfg, plan)

    # Fit once on the training rows to report the features the model will see.
    started = time.perf_counter()
    encoded = clone(preprocessor).fit_transform(state.train[list(schema.features)], state.train[schema.target])
    fit_seconds = time.perf_counter() - started

    run.log.log_params(
        {
            "onehot_columns": list(plan.onehot),
            "high_cardinality_columns": list(plan.high_cardinality),
            "high_cardinality_encoder": plan.high_cardinality_encoder,
            "derived_features": derived,
            "date_parts": list(plan.date_parts),
        }
    )
    run.log.log_metrics(
        {
            "features_in": len(schema.features),
            "features_derived": len(plan.derived),
            "features_out": encoded.shape[1],
            "preprocess_fit_seconds": fit_seconds,
        }
    )
    log_artifact_dict({"input_kinds": plan.kinds(), "output_features": list(map(str, encoded.columns))}, "features.json")
    return replace(state, plan=plan, preprocessor=preprocessor)


def preprocessor_for(schema, cfg: Config, plan) -> object:
    """The unfitted cleaning + features Pipeline for a plan (also used on a cache hit)."""
    return build_preprocessor(schema, cfg.preprocess, plan, dict(cfg.data.derived_features), cfg.seed)
