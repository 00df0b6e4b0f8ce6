"""features: decide each column's encoding and build the preprocessing Pipeline.

Caches the feature plan; on a hit the unfitted preprocessor is rebuilt from it
(``preprocessor_for``, the same call the stage makes).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from sklearn.base import clone

from mlcycle.config.schema import Config
from mlcycle.core.features import FeaturePlan, plan_features
from mlcycle.core.modeling import build_preprocessor
from mlcycle.stages.base import Stage, State, read_json, write_json
from mlcycle.tracking.artifacts import log_artifact_dict
from mlcycle.tracking.runs import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, feats, derived = state.schema, cfg.features, dict(cfg.data.derived_features)
    plan = plan_features(
        state.train, numeric=schema.numeric, categorical=schema.categorical, datetime=schema.datetime,
        derived=derived, max_onehot_cardinality=feats.max_onehot_cardinality,
        high_cardinality_encoder=feats.high_cardinality_encoder.value, date_parts=tuple(feats.date_parts),
        scale_numeric=feats.scale_numeric,
    )
    preprocessor = preprocessor_for(state, cfg, plan)
    # Fit once on the training rows to report the features the model will see.
    started = time.perf_counter()
    encoded = clone(preprocessor).fit_transform(state.train[list(schema.features)], state.train[schema.target])
    run.log.log_params({
        "onehot_columns": list(plan.onehot), "high_cardinality_columns": list(plan.high_cardinality),
        "high_cardinality_encoder": plan.high_cardinality_encoder, "derived_features": derived,
        "date_parts": list(plan.date_parts),
    })
    run.log.log_metrics({
        "features_in": len(schema.features), "features_derived": len(plan.derived), "features_out": encoded.shape[1],
        "preprocess_fit_seconds": time.perf_counter() - started,
    })
    log_artifact_dict({"input_kinds": plan.kinds(), "output_features": list(map(str, encoded.columns))}, "features.json")
    return replace(state, plan=plan, preprocessor=preprocessor)


def preprocessor_for(state: State, cfg: Config, plan: FeaturePlan) -> object:
    """The unfitted cleaning + features Pipeline for a plan."""
    return build_preprocessor(state.schema, cfg.preprocess, plan, dict(cfg.data.derived_features), cfg.seed)


def save(state: State, out: Path) -> None:
    write_json(out / "feature_plan.json", asdict(state.plan))


def load(state: State, cfg: Config, files: Path) -> State:
    plan = FeaturePlan.from_dict(read_json(files, "feature_plan.json"))
    return replace(state, plan=plan, preprocessor=preprocessor_for(state, cfg, plan))


STAGE = Stage("features", ("features", "preprocess", "data.derived_features", "seed"), run, save, load)
