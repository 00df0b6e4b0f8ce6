"""register: log the model once, register it as a new version aliased ``challenger``, and
run the gated promotion.

The gate compares the new model with the current champion re-scored on THIS run's test
split (see tracking.registry.promote); a failed gate still registers the version, with the
reasons as tags. Cached: a hit reuses the version it registered (no duplicate version, and
aliases are not moved; they are reported as they are now).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlcycle.config.schema import Config
from mlcycle.core.modeling import best_family, families
from mlcycle.stages import ingest
from mlcycle.stages.base import Stage, State, read_json, write_json
from mlcycle.tracking import model_io, registry
from mlcycle.tracking.registration import FAMILY_TAG, end_ghost_models, register_and_gate
from mlcycle.tracking.runs import ActiveRun, stage_outputs


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, reg, client = state.schema, cfg.registry, run.log.client
    info = model_io.log_model(state.model, state.splits.train[list(schema.features)].head(5), schema)
    end_ghost_models(client, run.experiment_id, run.run_id, info.model_id)
    run.log.set_tags({model_io.MODEL_URI_TAG: info.model_uri})
    if not reg.enabled:
        return replace(state, model_uri=info.model_uri)
    tags = {
        **state.lineage,  # root run id, git commit, config fingerprint, package version
        "task": schema.task.value, "data_digest": state.data_digest, registry.TAG_PRIMARY_METRIC: state.metric or "",
        FAMILY_TAG: best_family(families(cfg.model, schema.task), state.best_params),  # model=auto: the winner or ensemble
        model_io.MANIFEST_TAG: model_io.manifest(info.model_uri),
        **{f"test_{k}": f"{v:.6g}" for k, v in state.test_metrics.items()},
    }
    if data := stage_outputs(client, state.lineage[registry.TAG_ROOT_RUN], ingest.STAGE.name):
        # the test split the gate scored on: in the run that holds the splits (a cache hit's source)
        tags[registry.TAG_TEST_DATA] = f"runs:/{data.info.run_id}/{ingest.SPLITS_DIR}/test.parquet"
    test = state.splits.test[[*schema.features, schema.target]]
    candidate = registry.Candidate("", schema.task, dict(state.test_metrics), test, schema.target, state.metric)
    outcome = register_and_gate(info.model_uri, tags, candidate, reg)
    outcome.log_to(run, reg.champion_alias)
    return replace(state, model_uri=info.model_uri, registered_name=reg.model_name, registered_version=outcome.version,
                   aliases=outcome.aliases, promoted=outcome.promotion.promoted, gate_summary=outcome.promotion.summary)


def save(state: State, out: Path) -> None:
    write_json(out / "registration.json", {
        "model_uri": state.model_uri, "registered_name": state.registered_name,
        "registered_version": state.registered_version, "aliases": list(state.aliases),
        # the gate's outcome when this version was registered (not rerun on a hit)
        "promoted": state.promoted, "gate_summary": state.gate_summary,
    })


def load(state: State, cfg: Config, files: Path) -> State:
    stored = read_json(files, "registration.json")
    name, version = stored["registered_name"], stored["registered_version"]
    aliases = registry.aliases_of(name, version) if version else ()
    return replace(
        state, model_uri=stored["model_uri"], registered_name=name, registered_version=version, aliases=aliases,
        promoted=stored.get("promoted", False), gate_summary=stored.get("gate_summary"),
    )


STAGE = Stage("register", ("registry",), run, save, load)
