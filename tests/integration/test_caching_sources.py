"""Step caching cases that need their own store: failed sources, lost artifacts, a data file
changed in place, and the git tree (clean, dirty, not a checkout)."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.config.schema import STAGES
from tests.conftest import TINY, compose
from tests.integration.runs import CACHED, cache_status, reran, stage_runs


def test_failed_stage_runs_are_never_a_cache_source(store):
    cfg = compose([*TINY, *CACHED, "+model.classifier.params.dual=true"])  # every trial's fit fails (lbfgs)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="tuning trials failed"):
            pipeline.run(cfg)
    client = MlflowClient()
    roots = client.search_runs(
        [client.get_experiment_by_name("mlcycle").experiment_id],
        "tags.`mlcycle.run_kind` = 'pipeline'",
        order_by=["attributes.start_time ASC"],
    )
    second = cache_status(client, roots[1].info.run_id)
    assert second == {"ingest": "hit", "preprocess": "hit", "features": "hit", "tune": "miss"}


def test_a_source_whose_outputs_are_gone_is_recomputed(store, tmp_path):
    client = MlflowClient()
    first = pipeline.run(compose([*TINY, *CACHED]))
    train = stage_runs(client, first.run_id)["train"]
    stored = tmp_path / "mlartifacts"
    model_files = list(stored.rglob(f"{train.info.run_id}/artifacts/cache/model.skops"))
    assert len(model_files) == 1
    model_files[0].unlink()

    second = pipeline.run(compose([*TINY, *CACHED]))
    status = cache_status(client, second.run_id)
    assert status["train"] == "miss"
    assert "restore from" in stage_runs(client, second.run_id)["train"].data.tags["mlcycle.cache_reason"]
    # train recomputed the same model, so evaluate and register are still reused
    assert status == {**dict.fromkeys(STAGES, "hit"), "train": "miss"}
    assert second.state.test_metrics == first.state.test_metrics


def test_a_changed_data_file_reruns_ingest(store, tmp_path):
    from mlcycle.core.datasets import generate_sessions

    path = tmp_path / "sessions.csv"
    generate_sessions(600, 3, 0.0).to_csv(path, index=False)
    overrides = [*TINY, *CACHED, "data=csv", f"data.path={path}", "data.target=purchased", "data.drop_columns=[session_id]"]
    client = MlflowClient()
    first = pipeline.run(compose(overrides))
    assert reran(client, pipeline.run(compose(overrides)).run_id) == set()

    frame = pd.read_csv(path)
    frame.loc[frame.index[:50], "price"] *= 2  # same config, different content
    frame.to_csv(path, index=False)
    changed = pipeline.run(compose(overrides))
    assert reran(client, changed.run_id) == set(STAGES)
    assert changed.state.data_digest != first.state.data_digest


def git(root, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root, check=True, capture_output=True)


def test_caching_needs_a_clean_git_tree_unless_allowed(store, tmp_path):
    """MLCYCLE_ROOT is a real git repository: clean -> cached; dirty -> off, with the reason."""
    git(tmp_path, "init", "-q")
    (tmp_path / "notes.txt").write_text("v1\n")
    git(tmp_path, "add", "notes.txt")
    git(tmp_path, "commit", "-q", "-m", "init")
    tiny = [*TINY, "evaluate.plots=false"]
    client = MlflowClient()

    first = pipeline.run(compose(tiny))
    assert set(cache_status(client, first.run_id).values()) == {"miss"}
    assert set(cache_status(client, pipeline.run(compose(tiny)).run_id).values()) == {"hit"}

    (tmp_path / "notes.txt").write_text("v2\n")  # uncommitted change
    dirty = pipeline.run(compose(tiny))
    runs = stage_runs(client, dirty.run_id).values()
    assert {r.data.tags["mlcycle.cache"] for r in runs} == {"off"}
    assert all("uncommitted changes" in r.data.tags["mlcycle.cache_reason"] for r in runs)
    assert not any("mlcycle.fingerprint" in r.data.tags for r in runs)  # never a source either
    assert client.get_run(dirty.run_id).data.tags["mlcycle.git_dirty"] == "true"

    allowed = pipeline.run(compose([*tiny, "cache.allow_dirty=true"]))
    assert set(cache_status(client, allowed.run_id).values()) == {"hit"}


def test_outside_a_git_checkout_caching_is_off_by_default(store):
    result = pipeline.run(compose([*TINY, "evaluate.plots=false", "stages=[ingest]"]))
    ingest = stage_runs(MlflowClient(), result.run_id)["ingest"]
    assert ingest.data.tags["mlcycle.cache"] == "off"
    assert "not a git checkout" in ingest.data.tags["mlcycle.cache_reason"]


def test_a_missing_data_file_fails_ingest_with_the_cache_reason_recorded(store, tmp_path):
    from mlcycle.errors import DataError

    missing = tmp_path / "nowhere.csv"
    cfg = compose([*TINY, *CACHED, "data=csv", f"data.path={missing}", "data.target=purchased"])
    with pytest.raises(DataError, match="data file not found"):
        pipeline.run(cfg)
    client = MlflowClient()
    root = client.search_runs([client.get_experiment_by_name("mlcycle").experiment_id], "tags.`mlcycle.run_kind` = 'pipeline'")[0]
    ingest = stage_runs(client, root.info.run_id)["ingest"]
    assert ingest.info.status == "FAILED"
    assert ingest.data.tags["mlcycle.cache"] == "off"
    assert "input not readable" in ingest.data.tags["mlcycle.cache_reason"]
