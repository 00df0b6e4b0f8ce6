"""ingest: load the source, validate and type it, split it, log the splits as datasets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlcycle import data
from mlcycle.config import Config
from mlcycle.state import State
from mlcycle.tracking import ActiveRun, log_artifact_dict, log_frames, log_splits


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    loaded = data.load(cfg.data, base_dir=Path.cwd())
    schema, frame = data.infer_schema(loaded.frame, cfg.data, loaded.source)
    splits = data.split(frame, schema, cfg.data)
    digest = data.digest(frame)

    run.log.log_params(
        {
            "source": loaded.source,
            "target": schema.target,
            "task": schema.task.value,
            "numeric_columns": list(schema.numeric),
            "categorical_columns": list(schema.categorical),
            "datetime_columns": list(schema.datetime),
            "dropped_columns": list(cfg.data.drop_columns),
            "split": f"{cfg.data.split.train}/{cfg.data.split.validation}/{cfg.data.split.test}",
            "split_kind": "time" if cfg.data.time_column else ("stratified" if schema.classes else "random"),
        }
    )
    run.log.log_metrics(
        {
            "rows_in": len(loaded.frame),
            "rows_out": len(frame),
            "rows_missing_target": len(loaded.frame) - len(frame),
            "columns_in": loaded.frame.shape[1],
            "n_features": len(schema.features),
            **{f"rows_{name}": len(part) for name, part in splits.items()},
        }
    )
    run.log.set_tags({"mlcycle.data_digest": digest, "mlcycle.data_source": loaded.source})
    log_splits(splits, loaded.source, schema.target, cfg.data.name)
    log_artifact_dict(data.profile(splits, schema), "data_profile.json")
    # The splits themselves, as Parquet: lineage for monitoring, reuse and reproduction.
    log_frames(dict(splits.items()), "splits")
    return replace(state, data=loaded, schema=schema, splits=splits, data_digest=digest)
