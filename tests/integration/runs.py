"""Helpers for reading a pipeline's run tree back from the tracking store."""

from __future__ import annotations

from mlflow import MlflowClient

# Tiny runs whose stages may be served from the cache: MLCYCLE_ROOT is a temp folder, not a
# git checkout, so the code version is unknown and caching must be allowed explicitly.
CACHED = ["cache.allow_dirty=true", "evaluate.plots=false"]


def stage_runs(client: MlflowClient, root_id: str) -> dict:
    """Stage name -> stage run, for one root run."""
    root = client.get_run(root_id)
    runs = client.search_runs(
        [root.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{root_id}'", max_results=100
    )
    return {r.info.run_name: r for r in runs}


def cache_status(client: MlflowClient, root_id: str) -> dict[str, str]:
    """Stage name -> hit | miss | forced | off."""
    return {name: run.data.tags.get("mlcycle.cache") for name, run in stage_runs(client, root_id).items()}


def reran(client: MlflowClient, root_id: str) -> set[str]:
    """The stages that really ran (were not served from the cache)."""
    return {name for name, status in cache_status(client, root_id).items() if status != "hit"}
