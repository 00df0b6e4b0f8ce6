"""ingest: load the source, validate and type it, split it, log the splits as datasets.

Caches the splits (its ``splits/`` artifacts, also lineage for monitoring and reproduce)
and the schema; a data file's content is part of its fingerprint, so an edited file reruns.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from mlcycle.config.schema import Config, Source
from mlcycle.core import data, tables
from mlcycle.stages.base import CACHE_DIR, Stage, State, read_frame, read_json, write_json
from mlcycle.tracking.artifacts import log_artifact_dict, log_frames, log_splits
from mlcycle.tracking.lineage import DATA_DIGEST_TAG, DATA_SOURCE_TAG
from mlcycle.tracking.runs import ActiveRun

SPLITS_DIR = "splits"  # splits/{train,validation,test}.parquet: the rows every later step used


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    loaded = data.load(cfg.data)  # data.path is absolute (config.paths.anchor)
    schema, frame = data.infer_schema(loaded.frame, cfg.data, loaded.source)
    splits = data.split(frame, schema, cfg.data)
    digest = data.digest(frame)
    split = cfg.data.split
    run.log.log_params({
        "source": loaded.source, "target": schema.target, "task": schema.task.value,
        "numeric_columns": list(schema.numeric), "categorical_columns": list(schema.categorical),
        "datetime_columns": list(schema.datetime), "dropped_columns": list(cfg.data.drop_columns),
        "split": f"{split.train}/{split.validation}/{split.test}",
        "split_kind": "time" if cfg.data.time_column else ("stratified" if schema.classes else "random"),
    })
    run.log.log_metrics({
        "rows_in": len(loaded.frame), "rows_out": len(frame), "rows_missing_target": len(loaded.frame) - len(frame),
        "columns_in": loaded.frame.shape[1], "n_features": len(schema.features),
        **{f"rows_{name}": len(part) for name, part in splits.items()},
    })
    run.log.set_tags({DATA_DIGEST_TAG: digest, DATA_SOURCE_TAG: loaded.source})
    log_splits(splits, loaded.source, schema.target, cfg.data.name)
    log_artifact_dict(data.profile(splits, schema), "data_profile.json")
    log_frames(dict(splits.items()), SPLITS_DIR)
    return replace(state, data=loaded, schema=schema, splits=splits, data_digest=digest)


def inputs(cfg: Config) -> dict[str, str]:
    """A data file can change in place: its content is part of the fingerprint."""
    if cfg.data.source is Source.file:  # OSError when missing: the stage itself reports it
        return {"data_file": tables.file_digest(tables.resolve_path(cfg.data.path or ""))}
    return {}


def save(state: State, out: Path) -> None:
    meta = {"source": state.data.source, "data_digest": state.data_digest, "schema": state.schema.to_dict()}
    write_json(out / "ingest.json", meta)


def load(state: State, cfg: Config, files: Path) -> State:
    meta = read_json(files, "ingest.json")
    schema = data.Schema.from_dict(meta["schema"])
    parts = {name: read_frame(files / SPLITS_DIR / f"{name}.parquet", schema) for name in ("train", "validation", "test")}
    # The validated rows (the three splits), not the raw file: that is what later stages use.
    loaded = data.LoadedData(pd.concat(list(parts.values()), ignore_index=True), meta["source"])
    return replace(state, data=loaded, schema=schema, splits=data.Splits(**parts), data_digest=meta["data_digest"])


STAGE = Stage("ingest", ("data",), run, save, load, keeps=(CACHE_DIR, SPLITS_DIR), inputs=inputs)
