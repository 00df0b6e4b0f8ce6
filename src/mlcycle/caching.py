"""Step caching: a stage whose fingerprint matches an earlier FINISHED stage run reuses that
run's stored outputs instead of running again.

A stage's fingerprint hashes (never MLflow params, which are strings):

* the stage name;
* the resolved config the stage reads (``STAGE_CONFIG``; the table is in docs/architecture.md);
* the previous stage's fingerprint, so any change upstream invalidates everything after it,
  and for ``ingest`` the content hash of a data file;
* the code version (lineage.code_version): mlcycle's version, git commit, a digest of
  mlcycle's source, Python and library versions.

After a stage really runs, ``OUTPUTS[stage].save`` stores what rebuilds its part of State as
artifacts of the stage run (under ``cache/``; ingest's splits are its ``splits/``), and only
then is the run tagged ``mlcycle.fingerprint``. On a hit, ``load`` rebuilds State from the
source run's artifacts; the stage still gets its own child run, tagged ``mlcycle.cache=hit``
and ``mlcycle.cache_source_run``, with the source run's params and metrics copied onto it.

Caching needs a known, clean code version: outside a git checkout, or with uncommitted
changes, lookups are off unless ``cache.allow_dirty=true``. ``cache.enabled=false`` turns
lookups off but still stores outputs; ``cache.force=[tune]`` reruns tune and every later stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from mlcycle import data
from mlcycle.config import STAGES, Config, Source, Task, as_dict
from mlcycle.data import LoadedData, Schema, Splits
from mlcycle.features import FeaturePlan
from mlcycle.lineage import code_version
from mlcycle.state import State
from mlcycle.tracking import ActiveRun

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "mlcycle.fingerprint"
CACHE_TAG = "mlcycle.cache"  # hit | miss | forced | off
REASON_TAG = "mlcycle.cache_reason"
SOURCE_TAG = "mlcycle.cache_source_run"
SOURCE_ROOT_TAG = "mlcycle.cache_source_root"
HITS_TAG = "mlcycle.cache_hits"  # on the root run: stages served from the cache
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
CACHE_DIR = "cache"

# The resolved config each stage reads directly (dotted paths into the config). Anything a
# stage reads through its inputs is covered by the previous stage's fingerprint.
STAGE_CONFIG: dict[str, tuple[str, ...]] = {
    "ingest": ("data",),
    "preprocess": ("preprocess", "seed"),
    "features": ("features", "preprocess", "data.derived_features", "seed"),
    "tune": ("model", "tune", "evaluate.primary_metric", "data.time_column", "seed"),
    "train": ("model", "seed"),
    "evaluate": ("evaluate",),
    "register": ("registry",),
}
# Tags of a source stage run worth copying onto a hit (what the stage itself would have set).
COPIED_TAGS = ("mlcycle.data_digest", "mlcycle.data_source", "mlcycle.model_uri")


class RestoreError(Exception):
    """A source run's outputs cannot rebuild the State; the stage runs instead."""


# --------------------------------------------------------------------------- fingerprints
def stage_config(resolved: dict[str, Any], stage: str) -> dict[str, Any]:
    out = {}
    for dotted in STAGE_CONFIG[stage]:
        value: Any = resolved
        for part in dotted.split("."):
            value = value[part]
        out[dotted] = value
    return out


def stage_fingerprint(stage: str, resolved: dict[str, Any], upstream: str | None, code: dict, inputs: dict) -> str:
    """Order-sensitive on purpose: reordering ``data.derived_features`` (column order) or a
    search space (Optuna's draw order) changes results, so it must not be a hit."""
    payload = {"stage": stage, "config": stage_config(resolved, stage), "upstream": upstream, "inputs": inputs, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=False).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def stage_inputs(stage: str, cfg: Config) -> dict[str, str]:
    """External inputs besides config: the content of a data file (it can change in place)."""
    if stage == "ingest" and cfg.data.source is Source.file:
        path = data.resolve_path(cfg.data.path or "", Path.cwd())
        return {"data_file": file_digest(path)}  # OSError when missing: ingest reports it
    return {}


# --------------------------------------------------------------------------- stored outputs
def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _read_frame(path: Path, schema: Schema) -> pd.DataFrame:
    return data.restore_types(pd.read_parquet(path), schema)


def _save_ingest(state: State, out: Path) -> None:
    s = state.schema
    schema = {
        "target": s.target, "task": s.task.value, "numeric": list(s.numeric), "categorical": list(s.categorical),
        "datetime": list(s.datetime), "classes": list(s.classes),
    }
    _write_json(out / "ingest.json", {"source": state.data.source, "data_digest": state.data_digest, "schema": schema})


def _load_ingest(state: State, cfg: Config, files: Path, source: Run) -> State:
    meta = _read_json(files / CACHE_DIR / "ingest.json")
    s = meta["schema"]
    schema = Schema(
        target=s["target"], task=Task(s["task"]), numeric=tuple(s["numeric"]), categorical=tuple(s["categorical"]),
        datetime=tuple(s["datetime"]), classes=tuple(s["classes"]),
    )
    parts = {name: _read_frame(files / "splits" / f"{name}.parquet", schema) for name in ("train", "validation", "test")}
    splits = Splits(**parts)
    # The validated rows (the three splits), not the raw file: that is what later stages use.
    frame = pd.concat(list(parts.values()), ignore_index=True)
    loaded = LoadedData(frame, meta["source"])
    return replace(state, data=loaded, schema=schema, splits=splits, data_digest=meta["data_digest"])


def _save_preprocess(state: State, out: Path) -> None:
    state.train.to_parquet(out / "train.parquet", index=False)
    state.validation.to_parquet(out / "validation.parquet", index=False)


def _load_preprocess(state: State, cfg: Config, files: Path, source: Run) -> State:
    train = _read_frame(files / CACHE_DIR / "train.parquet", state.schema)
    validation = _read_frame(files / CACHE_DIR / "validation.parquet", state.schema)
    return replace(state, train=train, validation=validation)


def _save_features(state: State, out: Path) -> None:
    _write_json(out / "feature_plan.json", asdict(state.plan))


def _load_features(state: State, cfg: Config, files: Path, source: Run) -> State:
    from mlcycle.stages.features import preprocessor_for

    stored = _read_json(files / CACHE_DIR / "feature_plan.json")
    plan = FeaturePlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
    return replace(state, plan=plan, preprocessor=preprocessor_for(state.schema, cfg, plan))


def _save_tune(state: State, out: Path) -> None:
    # strict JSON: a value that does not survive the round trip fails here, not on a hit
    _write_json(out / "tune.json", {"metric": state.metric, "best_params": state.best_params, "cv_score": state.cv_score})


def _load_tune(state: State, cfg: Config, files: Path, source: Run) -> State:
    from sklearn.base import clone

    stored = _read_json(files / CACHE_DIR / "tune.json")
    return replace(
        state, metric=stored["metric"], best_params=stored["best_params"], cv_score=stored["cv_score"],
        preprocessor=clone(state.preprocessor),
    )


def _save_train(state: State, out: Path) -> None:
    import skops.io

    (out / "model.skops").write_bytes(skops.io.dumps(state.model))


def _load_train(state: State, cfg: Config, files: Path, source: Run) -> State:
    import skops.io

    from mlcycle.registry import TRUSTED_TYPES

    payload = (files / CACHE_DIR / "model.skops").read_bytes()
    untrusted = skops.io.get_untrusted_types(data=payload)
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise RestoreError(f"stored model holds types not in registry.TRUSTED_TYPES: {unknown}")
    return replace(state, model=skops.io.loads(payload, trusted=untrusted))


def _save_evaluate(state: State, out: Path) -> None:
    _write_json(out / "evaluation.json", {"test_metrics": state.test_metrics})


def _load_evaluate(state: State, cfg: Config, files: Path, source: Run) -> State:
    return replace(state, test_metrics=_read_json(files / CACHE_DIR / "evaluation.json")["test_metrics"])


def _save_register(state: State, out: Path) -> None:
    _write_json(
        out / "registration.json",
        {"model_uri": state.model_uri, "registered_name": state.registered_name,
         "registered_version": state.registered_version, "aliases": list(state.aliases),
         # the gate's outcome when this version was registered (not rerun on a hit)
         "promoted": state.promoted, "gate_summary": state.gate_summary},
    )


def _load_register(state: State, cfg: Config, files: Path, source: Run) -> State:
    """The same model is already registered: reuse that version, do not register a copy.

    Aliases are the registry's own state: reported as they are now, never moved by a hit."""
    stored = _read_json(files / CACHE_DIR / "registration.json")
    name, version = stored["registered_name"], stored["registered_version"]
    aliases: tuple[str, ...] = ()
    if version:
        try:
            found = MlflowClient().get_model_version(name, version)
        except MlflowException:
            raise RestoreError(f"registered version {name}/{version} no longer exists") from None
        aliases = tuple(found.aliases)
    return replace(
        state, model_uri=stored["model_uri"], registered_name=name, registered_version=version, aliases=aliases,
        promoted=stored.get("promoted", False), gate_summary=stored.get("gate_summary"),
    )


@dataclass(frozen=True)
class StageOutputs:
    save: Callable[[State, Path], None]  # write files into a folder logged as ``cache/``
    load: Callable[[State, Config, Path, Run], State]  # rebuild State from downloaded artifacts
    folders: tuple[str, ...] = (CACHE_DIR,)  # artifact folders ``load`` reads


OUTPUTS: dict[str, StageOutputs] = {
    "ingest": StageOutputs(_save_ingest, _load_ingest, (CACHE_DIR, "splits")),
    "preprocess": StageOutputs(_save_preprocess, _load_preprocess),
    "features": StageOutputs(_save_features, _load_features),
    "tune": StageOutputs(_save_tune, _load_tune),
    "train": StageOutputs(_save_train, _load_train),
    "evaluate": StageOutputs(_save_evaluate, _load_evaluate),
    "register": StageOutputs(_save_register, _load_register),
}


# --------------------------------------------------------------------------- the cache
def disabled_reason(cfg: Config, lineage: dict[str, str]) -> str | None:
    """Why the code version cannot identify the code (None when it can, or when allowed)."""
    if cfg.cache.allow_dirty:
        return None
    if lineage.get("git_commit", "unknown") == "unknown":
        return f"code version unknown ({cfg.paths.root} is not a git checkout); cache.allow_dirty=true caches anyway"
    if lineage.get("git_dirty") != "false":
        return f"the git tree at {cfg.paths.root} has uncommitted changes; cache.allow_dirty=true caches anyway"
    return None


class StageCache:
    """Called by the pipeline around each stage: ``state = cache.run(name, fn, state, stage)``."""

    def __init__(self, cfg: Config, root: ActiveRun, lineage: dict[str, str]):
        self.cfg = cfg
        self.root = root
        self.client = root.log.client
        self.resolved = as_dict(cfg)
        self.code = code_version(lineage)
        self.no_code_reason = disabled_reason(cfg, lineage)
        forced = [STAGES.index(s) for s in cfg.cache.force]
        self.force_from = min(forced) if forced else None
        self.upstream: str | None = None
        self.hits: list[str] = []
        # restoring downloads artifacts; MLflow's progress bars would clutter the console
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if self.no_code_reason:
            log.info("step cache off: %s", self.no_code_reason)
        root.log.set_tags({HITS_TAG: ""})

    def run(self, name: str, fn: Callable[[State, Config, ActiveRun], State], state: State, stage: ActiveRun) -> State:
        fp, why_not = self._fingerprint(name)
        self.upstream = fp
        tags: dict[str, str] = {}
        if fp is None:
            tags = {CACHE_TAG: "off", REASON_TAG: why_not}
        elif not self.cfg.cache.enabled:
            tags = {CACHE_TAG: "off", REASON_TAG: "cache.enabled=false"}
        elif self.force_from is not None and STAGES.index(name) >= self.force_from:
            tags = {CACHE_TAG: "forced", REASON_TAG: f"cache.force={list(self.cfg.cache.force)}"}
        else:
            source = self._lookup(name, fp)
            if source is None:
                tags = {CACHE_TAG: "miss", REASON_TAG: "no finished run with this fingerprint"}
            else:
                try:
                    restored = self._restore(name, source, state)
                except (RestoreError, MlflowException, OSError, ValueError, KeyError) as exc:
                    log.warning("stage %s: cannot reuse run %s (%s); running it", name, source.info.run_id, exc)
                    tags = {CACHE_TAG: "miss", REASON_TAG: f"restore from {source.info.run_id} failed: {exc}"[:5000]}
                else:
                    self._mark_hit(name, fp, source, stage)
                    return restored

        stage.log.set_tags(tags)  # buffered: on the run even if the stage fails
        new_state = fn(state, self.cfg, stage)
        if fp is not None:
            try:
                self._store(name, new_state, stage)
            except Exception as exc:  # the stage's work is done; only its reuse is lost
                log.warning("stage %s: outputs not stored for reuse: %s", name, exc)
                stage.log.set_tags({REASON_TAG: f"outputs not stored for reuse: {exc}"[:5000]})
            else:
                stage.log.set_tags({FINGERPRINT_TAG: fp})  # now a possible cache source
        return new_state

    # ------------------------------------------------------------------ internals
    def _fingerprint(self, name: str) -> tuple[str | None, str]:
        """(fingerprint, "") or (None, why there is none)."""
        if self.no_code_reason is not None:
            return None, self.no_code_reason
        if name != STAGES[0] and self.upstream is None:
            return None, "an earlier stage has no fingerprint"
        try:
            inputs = stage_inputs(name, self.cfg)
        except OSError as exc:  # the stage itself reports the unreadable file
            return None, f"input not readable: {exc}"
        return stage_fingerprint(name, self.resolved, self.upstream, self.code, inputs), ""

    def _lookup(self, name: str, fp: str) -> Run | None:
        """The newest FINISHED run of this stage that computed (not reused) these outputs."""
        runs = self.client.search_runs(
            [self.root.experiment_id],
            filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fp}' AND attributes.status = 'FINISHED' AND tags.`{CACHE_TAG}` != 'hit'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _restore(self, name: str, source: Run, state: State) -> State:
        outputs = OUTPUTS[name]
        with tempfile.TemporaryDirectory() as tmp:
            for folder in outputs.folders:
                self.client.download_artifacts(source.info.run_id, folder, tmp)
            return outputs.load(state, self.cfg, Path(tmp), source)

    def _store(self, name: str, state: State, stage: ActiveRun) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            OUTPUTS[name].save(state, Path(tmp))
            self.client.log_artifacts(stage.run_id, tmp, CACHE_DIR)

    def _mark_hit(self, name: str, fp: str, source: Run, stage: ActiveRun) -> None:
        source_id = source.info.run_id
        source_root = source.data.tags.get("mlflow.parentRunId", "")
        stage.log.log_params(source.data.params)
        stage.log.log_metrics(source.data.metrics)
        stage.log.set_tags(
            {k: source.data.tags[k] for k in COPIED_TAGS if k in source.data.tags}
            | {
                CACHE_TAG: "hit",
                FINGERPRINT_TAG: fp,
                SOURCE_TAG: source_id,
                SOURCE_ROOT_TAG: source_root,
                REASON_TAG: "outputs reused",
                NOTE_TAG: (
                    f"Cache hit: this stage did not run. Its outputs, params and metrics come from "
                    f"stage run {source_id} (pipeline run {source_root}); its artifacts"
                    f"{' and trial runs' if name == 'tune' else ''} are there."
                ),
            }
        )
        self.hits.append(name)
        self.root.log.set_tags({HITS_TAG: ",".join(self.hits)})
        log.info("stage %s: cache hit, outputs of run %s", name, source_id)
