"""Step caching: a stage whose fingerprint matches an earlier FINISHED stage run reuses that
run's stored outputs instead of running again. Generic: each stage declares what it reads
and how it saves and loads its outputs (``stages.base.Stage``).

A stage's fingerprint hashes (never MLflow params, which are strings):

* the stage name;
* the resolved config the stage reads (``Stage.reads``; the table is in docs/architecture.md);
* the previous stage's fingerprint, so any change upstream invalidates everything after it,
  and what the stage reads from outside (``Stage.inputs``: a data file's content);
* the code version (``lineage.code_version``): mlcycle's version, git commit, a digest of
  mlcycle's source, Python and library versions.

After a stage really runs, ``Stage.save`` stores what rebuilds its part of State as
artifacts of the stage run (under ``cache/``), and only then is the run tagged
``mlcycle.fingerprint``. On a hit, ``Stage.load`` rebuilds State from the source run's
artifacts; the stage still gets its own child run, tagged ``mlcycle.cache=hit`` and
``mlcycle.cache_source_run``, with the source run's params and metrics copied onto it.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Run

from mlcycle.config.load import as_dict
from mlcycle.config.schema import STAGES, Config
from mlcycle.core.integrity import differences, from_text, manifest_of, to_text
from mlcycle.tracking.lineage import DATA_DIGEST_TAG, DATA_SOURCE_TAG, code_version
from mlcycle.tracking.model_io import MODEL_URI_TAG
from mlcycle.tracking.runs import (
    MAX_TAG_LENGTH,
    NOTE_TAG,
    PARENT_TAG,
    SOURCE_TAG,
    TIME_METRICS,
    ActiveRun,
)

if TYPE_CHECKING:
    from mlcycle.stages.base import Stage, State

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "mlcycle.fingerprint"
CACHE_TAG = "mlcycle.cache"  # hit | miss | forced | off
HIT = "hit"  # the one value of CACHE_TAG that means the stage did not run
REASON_TAG = "mlcycle.cache_reason"
SOURCE_ROOT_TAG = "mlcycle.cache_source_root"
HITS_TAG = "mlcycle.cache_hits"  # on the root run: stages served from the cache
MANIFEST_TAG = "mlcycle.cache_manifest"  # sha256 of every stored output file (core.integrity)
CACHE_DIR = "cache"
# Tags of a source stage run worth copying onto a hit (what the stage itself would have set).
COPIED_TAGS = (DATA_DIGEST_TAG, DATA_SOURCE_TAG, MODEL_URI_TAG)


# --------------------------------------------------------------------------- fingerprints
def stage_config(resolved: dict[str, Any], reads: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for dotted in reads:
        value: Any = resolved
        for part in dotted.split("."):
            value = value[part]
        out[dotted] = value
    return out


def stage_fingerprint(stage: str, config: dict[str, Any], upstream: str | None, code: dict, inputs: dict) -> str:
    """Order-sensitive on purpose: reordering ``data.derived_features`` (column order) or a
    search space (Optuna's draw order) changes results, so it must not be a hit."""
    payload = {"stage": stage, "config": config, "upstream": upstream, "inputs": inputs, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=False).encode()).hexdigest()[:16]


def disabled_reason(cfg: Config, lineage: dict[str, str]) -> str | None:
    """Why the code version cannot identify the code (None when it can, or when allowed)."""
    if cfg.cache.allow_dirty:
        return None
    if lineage.get("git_commit", "unknown") == "unknown":
        return f"code version unknown ({cfg.paths.root} is not a git checkout); cache.allow_dirty=true caches anyway"
    if lineage.get("git_dirty") != "false":
        return f"the git tree at {cfg.paths.root} has uncommitted changes; cache.allow_dirty=true caches anyway"
    return None


# --------------------------------------------------------------------------- the cache
class StageCache:
    """Called by the pipeline around each stage: ``state = cache.run(stage, state, child_run)``."""

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
        self.first = True
        self.hits: list[str] = []
        # restoring downloads artifacts; MLflow's progress bars would clutter the console
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if self.no_code_reason:
            log.info("step cache off: %s", self.no_code_reason)
        root.log.set_tags({HITS_TAG: ""})

    def run(self, stage: Stage, state: State, child: ActiveRun) -> State:
        fp, why_not = self._fingerprint(stage)
        self.upstream, self.first = fp, False
        if fp is None:
            tags = {CACHE_TAG: "off", REASON_TAG: why_not}
        elif not self.cfg.cache.enabled:
            tags = {CACHE_TAG: "off", REASON_TAG: "cache.enabled=false"}
        elif self.force_from is not None and STAGES.index(stage.name) >= self.force_from:
            tags = {CACHE_TAG: "forced", REASON_TAG: f"cache.force={list(self.cfg.cache.force)}"}
        elif (source := self._lookup(fp)) is None:
            tags = {CACHE_TAG: "miss", REASON_TAG: "no finished run with this fingerprint"}
        else:
            try:
                restored = self._restore(stage, source, state)
            except Exception as exc:  # artifact gone, unreadable, refused by the safe loader, ...
                log.warning("stage %s: cannot reuse run %s (%s); running it", stage.name, source.info.run_id, exc)
                tags = {CACHE_TAG: "miss", REASON_TAG: f"restore from {source.info.run_id} failed: {exc}"[:MAX_TAG_LENGTH]}
            else:
                self._mark_hit(stage, fp, source, child)
                return restored

        child.log.set_tags(tags)  # buffered: on the run even if the stage fails
        new_state = stage.run(state, self.cfg, child)
        if fp is not None:
            try:
                manifest = self._store(stage, new_state, child)
            except Exception as exc:  # the stage's work is done; only its reuse is lost
                log.warning("stage %s: outputs not stored for reuse: %s", stage.name, exc)
                child.log.set_tags({REASON_TAG: f"outputs not stored for reuse: {exc}"[:MAX_TAG_LENGTH]})
            else:  # now a possible cache source, whose files a hit checks first
                child.log.set_tags({FINGERPRINT_TAG: fp, MANIFEST_TAG: manifest})
        return new_state

    # ------------------------------------------------------------------ internals
    def _fingerprint(self, stage: Stage) -> tuple[str | None, str]:
        """(fingerprint, "") or (None, why there is none)."""
        if self.no_code_reason is not None:
            return None, self.no_code_reason
        if not self.first and self.upstream is None:
            return None, "an earlier stage has no fingerprint"
        try:
            inputs = stage.inputs(self.cfg)
        except OSError as exc:  # the stage itself reports the unreadable file
            return None, f"input not readable: {exc}"
        config = stage_config(self.resolved, stage.reads)
        return stage_fingerprint(stage.name, config, self.upstream, self.code, inputs), ""

    def _lookup(self, fp: str) -> Run | None:
        """The newest FINISHED run of this stage that computed (not reused) these outputs."""
        runs = self.client.search_runs(
            [self.root.experiment_id],
            filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fp}' AND attributes.status = 'FINISHED' AND tags.`{CACHE_TAG}` != '{HIT}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _restore(self, stage: Stage, source: Run, state: State) -> State:
        with tempfile.TemporaryDirectory() as tmp:
            for folder in stage.keeps:
                self.client.download_artifacts(source.info.run_id, folder, tmp)
            if (text := source.data.tags.get(MANIFEST_TAG)) and (diffs := differences(Path(tmp), from_text(text))):
                raise ValueError(f"stored outputs differ from their manifest ({'; '.join(diffs[:3])})")
            return stage.load(state, self.cfg, Path(tmp))

    def _store(self, stage: Stage, state: State, child: ActiveRun) -> str:
        """Store the stage's outputs; return the manifest of every file a hit will restore."""
        with tempfile.TemporaryDirectory() as tmp:
            stage.save(state, Path(tmp))
            self.client.log_artifacts(child.run_id, tmp, CACHE_DIR)
        with tempfile.TemporaryDirectory() as tmp:  # hashed as stored: what a hit will download
            for folder in stage.keeps:
                self.client.download_artifacts(child.run_id, folder, tmp)
            return to_text(manifest_of(Path(tmp)))

    def _mark_hit(self, stage: Stage, fp: str, source: Run, child: ActiveRun) -> None:
        source_id = source.info.run_id
        source_root = source.data.tags.get(PARENT_TAG, "")
        child.log.log_params(source.data.params)
        child.log.log_metrics({k: v for k, v in source.data.metrics.items() if k not in TIME_METRICS})  # its own: restore time
        child.log.set_tags(
            {k: source.data.tags[k] for k in COPIED_TAGS if k in source.data.tags}
            | {
                CACHE_TAG: HIT, FINGERPRINT_TAG: fp, SOURCE_TAG: source_id, SOURCE_ROOT_TAG: source_root,
                REASON_TAG: "outputs reused",
                NOTE_TAG: (
                    f"Cache hit: this stage did not run. Its outputs, params and metrics come from stage run "
                    f"{source_id} (pipeline run {source_root}); its artifacts and any child runs are there."
                ),
            }
        )
        self.hits.append(stage.name)
        self.root.log.set_tags({HITS_TAG: ",".join(self.hits)})
        log.info("stage %s: cache hit, outputs of run %s", stage.name, source_id)
