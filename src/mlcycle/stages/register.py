"""register: log the model once, register it as ``challenger``, and run the gated promotion.

The gate compares the new model with the current champion re-scored on THIS run's test split
(see registry.promote); a failed gate still registers the version, with the reasons as tags.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mlflow import MlflowClient

from mlcycle import registry, tracking
from mlcycle.config import Config
from mlcycle.state import State
from mlcycle.tracking import ActiveRun

log = logging.getLogger(__name__)


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema = state.schema
    example = state.splits.train[list(schema.features)].head(5)
    info = registry.log_model(state.model, example, schema)
    run.log.set_tags({"mlcycle.model_uri": info.model_uri})
    if not cfg.registry.enabled:
        return replace(state, model_uri=info.model_uri)

    root_id = state.lineage.get("root_run_id", "")
    ingest_id = tracking.stage_run_id(MlflowClient(), run.experiment_id, root_id, "ingest")
    version_tags = {
        **state.lineage,  # root run id, git commit, config fingerprint, package version
        "task": schema.task.value,
        "data_digest": state.data_digest,
        registry.TAG_PRIMARY_METRIC: state.metric or "",
        **{f"test_{k}": f"{v:.6g}" for k, v in state.test_metrics.items()},
    }
    if ingest_id:  # where `mlcycle promote` finds the test set to re-score champion and candidate
        version_tags[registry.TAG_TEST_DATA] = f"runs:/{ingest_id}/splits/test.parquet"
    test = state.splits.test[[*schema.features, schema.target]]
    candidate = registry.Candidate("", schema.task, dict(state.test_metrics), test, schema.target, state.metric)
    reg = cfg.registry
    outcome = registry.register_and_gate(
        info.model_uri, reg.model_name, version_tags, candidate,
        challenger=reg.challenger_alias, champion=reg.champion_alias, gate_cfg=reg.gate, lock_cfg=reg.lock,
    )
    promotion = outcome.promotion
    (log.info if promotion.promoted else log.warning)(
        "%s version %s: %s (%s)", reg.model_name, outcome.version,
        "promoted to " + reg.champion_alias if promotion.promoted else "not promoted", promotion.summary,
    )
    run.log.log_params({"registered_model": reg.model_name, "version": outcome.version})
    if promotion.decision is not None:  # the gate's numbers, comparable across runs in the UI
        for check in promotion.decision.checks:
            if check.candidate is not None and check.champion is not None:
                run.log.log_metrics({f"gate_candidate_{check.metric}": check.candidate,
                                     f"gate_champion_{check.metric}": check.champion})
    run.log.set_tags(
        {
            "mlcycle.aliases": ",".join(outcome.aliases),
            "mlcycle.gate": promotion.verdict,
            "mlcycle.gate.summary": promotion.summary[:5000],
            "mlcycle.promoted": str(promotion.promoted).lower(),
        }
    )
    return replace(
        state, model_uri=info.model_uri, registered_name=reg.model_name,
        registered_version=outcome.version, aliases=outcome.aliases,
        promoted=promotion.promoted, gate_summary=promotion.summary,
    )
