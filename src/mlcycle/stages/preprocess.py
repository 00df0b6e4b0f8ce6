"""preprocess: row-level cleaning of the training rows; fit the cell cleaner to report on it.

Duplicates and anomalous rows are removed from train and validation (the rows the final
model learns from), never from test: evaluation sees data as it arrives. Imputation and
clipping are fitted here only to report what they change; the same cleaner is part of the
model Pipeline built in the features stage (``infinite_values``: the ±inf cells among the
imputed ones). Caches the cleaned train and validation rows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlcycle.config.schema import Config
from mlcycle.core.cleaning import anomaly_mask, drop_duplicate_rows
from mlcycle.core.modeling import cleaner_for
from mlcycle.stages.base import CACHE_DIR, Stage, State, read_frame
from mlcycle.tracking.runs import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, splits, pre = state.schema, state.splits, cfg.preprocess
    train, validation = splits.train, splits.validation
    dropped_train = dropped_validation = anomalies = 0
    if pre.drop_duplicates:
        train, dropped_train = drop_duplicate_rows(train)
        validation, dropped_validation = drop_duplicate_rows(validation)
    if pre.drop_anomalies and schema.numeric:
        mask = anomaly_mask(train[list(schema.numeric)], pre.anomaly_contamination, cfg.seed)
        anomalies = int(mask.sum())
        train = train[~mask].reset_index(drop=True)
    report = cleaner_for(schema, pre).fit(train).report(train)

    run.log.log_params({"impute_numeric": pre.impute_numeric, "clip": pre.clip, "drop_anomalies": pre.drop_anomalies})
    run.log.log_metrics({
        "rows_in": len(splits.train) + len(splits.validation), "rows_out": len(train) + len(validation),
        "duplicates_removed_train": dropped_train, "duplicates_removed_validation": dropped_validation,
        "anomalies_removed": anomalies, "imputed_cells": report["imputed_cells"],
        "infinite_values": report["infinite_values"], "clipped_values": report["clipped_values"],
    })
    return replace(state, train=train, validation=validation)


def save(state: State, out: Path) -> None:
    state.train.to_parquet(out / "train.parquet", index=False)
    state.validation.to_parquet(out / "validation.parquet", index=False)


def load(state: State, cfg: Config, files: Path) -> State:
    train, validation = (read_frame(files / CACHE_DIR / f"{n}.parquet", state.schema) for n in ("train", "validation"))
    return replace(state, train=train, validation=validation)


STAGE = Stage("preprocess", ("preprocess", "seed"), run, save, load)
