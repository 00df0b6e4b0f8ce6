"""register: log the model once, register it, and set the aliases."""

from __future__ import annotations

from dataclasses import replace

from mlcycle import registry
from mlcycle.config import Config
from mlcycle.state import State
from mlcycle.tracking import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema = state.schema
    example = state.splits.train[list(schema.features)].head(5)
    info = registry.log_model(state.model, example, schema)
    run.log.set_tags({"mlcycle.model_uri": info.model_uri})
    if not cfg.registry.enabled:
        return replace(state, model_uri=info.model_uri)

    version_tags = {
        **state.lineage,  # root run id, git commit, config fingerprint, package version
        "task": schema.task.value,
        "data_digest": state.data_digest,
        **{f"test_{k}": f"{v:.6g}" for k, v in state.test_metrics.items()},
    }
    outcome = registry.register(
        info.model_uri, cfg.registry.model_name, version_tags,
        challenger=cfg.registry.challenger_alias, champion=cfg.registry.champion_alias,
    )
    run.log.log_params({"registered_model": cfg.registry.model_name, "version": outcome.version})
    run.log.set_tags({"mlcycle.aliases": ",".join(outcome.aliases)})
    return replace(
        state, model_uri=info.model_uri, registered_name=cfg.registry.model_name,
        registered_version=outcome.version, aliases=outcome.aliases,
    )
