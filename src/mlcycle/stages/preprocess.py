"""preprocess: row-level cleaning of the training rows; fit the cell cleaner to report on it.

Duplicates and anomalous rows are removed from train and validation (the rows the final
model learns from), never from test: evaluation sees data as it arrives. Imputation and
clipping are fitted here only to report what they change; the same cleaner is part of the
model Pipeline built in the features stage.
"""

from __future__ import annotations

from dataclasses import replace

from mlcycle.cleaning import TabularCleaner, anomaly_mask, drop_duplicate_rows
from mlcycle.config import Config
from mlcycle.state import State
from mlcycle.tracking import ActiveRun


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, splits, pre = state.schema, state.splits, cfg.preprocess
    train, validation = splits.train, splits.validation
    removed_dup = {"train": 0, "validation": 0}
    if pre.drop_duplicates:
        train, removed_dup["train"] = drop_duplicate_rows(train)
        validation, removed_dup["validation"] = drop_duplicate_rows(validation)
    anomalies = 0
    if pre.drop_anomalies and schema.numeric:
        mask = anomaly_mask(train[list(schema.numeric)], pre.anomaly_contamination, cfg.seed)
        anomalies = int(mask.sum())
        train = train[~mask].reset_index(drop=True)

    cleaner = TabularCleaner(
        numeric=schema.numeric,
        categorical=schema.categorical,
        datetime=schema.datetime,
        impute_numeric=pre.impute_numeric,
        clip=pre.clip.value,
        iqr_factor=pre.iqr_factor,
        quantile_low=pre.quantile_low,
        quantile_high=pre.quantile_high,
    ).fit(train)
    report = cleaner.report(train)

    run.log.log_params({"impute_numeric": pre.impute_numeric, "clip": pre.clip.value, "drop_anomalies": pre.drop_anomalies})
    run.log.log_metrics(
        {
            "rows_in": len(splits.train) + len(splits.validation),
            "rows_out": len(train) + len(validation),
            "duplicates_removed_train": removed_dup["train"],
            "duplicates_removed_validation": removed_dup["validation"],
            "anomalies_removed": anomalies,
            "imputed_cells": report["imputed_cells"],
            "clipped_values": report["clipped_values"],
        }
    )
    return replace(state, train=train, validation=validation)
