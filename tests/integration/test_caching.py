"""Step caching on real pipeline runs against a private sqlite store.

Most tests share one BASE run (module scope) and check, for each kind of config change,
which stages are served from the cache and which run again. MLCYCLE_ROOT is a temp folder
(not a git checkout), so these runs set ``cache.allow_dirty=true``; the git tests make a
real repository.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlcycle import pipeline
from mlcycle.config.schema import STAGES
from tests.conftest import TINY, compose, private_store
from tests.integration.runs import CACHED, cache_status, reran, stage_runs

AFTER = {s: set(STAGES[i:]) for i, s in enumerate(STAGES)}  # a stage and everything after it


@pytest.fixture(scope="module")
def base(tmp_path_factory, template_store):
    """One finished, cached pipeline run in a store shared by this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("cache-store")
        for _ in private_store(root, template_store, mp):
            yield pipeline.run(compose([*TINY, *CACHED]))


@pytest.fixture
def run_with(base):
    return lambda *extra: pipeline.run(compose([*TINY, *CACHED, *extra]))


@pytest.mark.parametrize(
    ("change", "expected_rerun"),
    [
        pytest.param(["registry.model_name=mlcycle-other"], {"register"}, id="registry-only"),
        pytest.param(["evaluate.plots=true"], {"evaluate", "register"}, id="evaluate"),
        pytest.param(["model.classifier.search_space.C.high=5.0"], AFTER["tune"], id="model-range"),
        pytest.param(["model.classifier.params.max_iter=500"], AFTER["tune"], id="model-param"),
        pytest.param(["tune.n_trials=2"], AFTER["tune"], id="tune"),
        pytest.param(["features.max_onehot_cardinality=4"], AFTER["features"], id="features"),
        pytest.param(["preprocess.iqr_factor=2.5"], AFTER["preprocess"], id="preprocess"),
        pytest.param(["data.n_rows=500"], AFTER["ingest"], id="data"),
        pytest.param(["seed=7"], AFTER["ingest"], id="seed"),
    ],
)
def test_a_change_reruns_the_stages_that_read_it_and_everything_after(run_with, change, expected_rerun):
    result = run_with(*change)
    client = MlflowClient()
    status = cache_status(client, result.run_id)
    assert reran(client, result.run_id) == expected_rerun, status
    assert {status[s] for s in expected_rerun} == {"miss"}
    root = client.get_run(result.run_id)
    hits = [s for s in STAGES if s not in expected_rerun]
    assert root.data.tags["mlcycle.cache_hits"] == ",".join(hits)


def test_identical_rerun_reuses_every_stage_and_duplicates_nothing(base, run_with):
    client = MlflowClient()
    versions_before = len(client.search_model_versions("name = 'mlcycle-ecommerce'"))
    again = run_with()
    assert cache_status(client, again.run_id) == dict.fromkeys(STAGES, "hit")

    source = stage_runs(client, base.run_id)
    hit = stage_runs(client, again.run_id)
    for name in STAGES:
        tags = hit[name].data.tags
        assert tags["mlcycle.cache_source_run"] == source[name].info.run_id
        assert tags["mlcycle.cache_source_root"] == base.run_id
        assert tags["mlcycle.fingerprint"] == source[name].data.tags["mlcycle.fingerprint"]
        assert source[name].info.run_id in tags["mlflow.note.content"]
        # still informative: the source's params and key metrics are on the hit run
        assert hit[name].data.params == source[name].data.params
        for key, value in source[name].data.metrics.items():
            if key != "time_seconds":  # the hit's own: its restore time
                assert hit[name].data.metrics[key] == value, (name, key)
        assert "time_seconds" in hit[name].data.metrics and "duration_seconds" not in hit[name].data.metrics
    # tune: trials are not duplicated; they stay under the source tune run
    assert client.search_runs([base.experiment_id], f"tags.`mlflow.parentRunId` = '{hit['tune'].info.run_id}'") == []
    assert hit["tune"].data.metrics["trials_complete"] == 3
    # register: the same model is not registered twice
    assert again.state.registered_version == base.state.registered_version == "1"
    assert len(client.search_model_versions("name = 'mlcycle-ecommerce'")) == versions_before
    assert client.get_run(again.run_id).data.tags["mlcycle.registered_version"] == "1"
    assert hit["ingest"].data.tags["mlcycle.data_digest"] == base.state.data_digest
    assert_same_state(again.state, base.state, aliases=current_aliases(client, "mlcycle-ecommerce", "1"))


def current_aliases(client: MlflowClient, name: str, version: str) -> tuple[str, ...]:
    return tuple(client.get_model_version(name, version).aliases)


# State fields compared by hand below; every OTHER field must come back equal from a hit, so a
# stage that adds a State field without storing it for reuse (caching.OUTPUTS) fails here.
SPECIAL = {"data", "splits", "train", "validation", "preprocessor", "model", "lineage", "aliases"}


def assert_same_state(hit, fresh, aliases) -> None:
    for f in fields(hit):
        if f.name not in SPECIAL:
            assert getattr(hit, f.name) == getattr(fresh, f.name), f.name
    assert hit.data.source == fresh.data.source
    for name, part in fresh.splits.items():
        pd.testing.assert_frame_equal(getattr(hit.splits, name), part)
    pd.testing.assert_frame_equal(hit.train, fresh.train)
    pd.testing.assert_frame_equal(hit.validation, fresh.validation)
    assert repr(hit.preprocessor.get_params()) == repr(fresh.preprocessor.get_params())
    X = fresh.splits.test[list(fresh.schema.features)]
    np.testing.assert_array_equal(hit.model.predict_proba(X), fresh.model.predict_proba(X))
    assert {k: v for k, v in hit.lineage.items() if k != "root_run_id"} == {
        k: v for k, v in fresh.lineage.items() if k != "root_run_id"
    }
    assert hit.aliases == aliases  # the registry's aliases as they are now; a hit moves none


def test_outputs_reused_from_a_hit_equal_a_fresh_run(run_with):
    """Tune onward reruns on data, cleaned rows and feature plan restored from the cache; the
    result must be what a run that computes everything gives."""
    change = "model.classifier.search_space.C.low=0.01"
    partial = run_with(change)
    fresh = run_with(change, "cache.enabled=false")
    client = MlflowClient()
    assert cache_status(client, partial.run_id) == {
        "ingest": "hit", "preprocess": "hit", "features": "hit",
        "tune": "miss", "train": "miss", "evaluate": "miss", "register": "miss",
    }
    assert cache_status(client, fresh.run_id) == dict.fromkeys(STAGES, "off")
    pd.testing.assert_frame_equal(partial.state.train, fresh.state.train)
    pd.testing.assert_frame_equal(partial.state.validation, fresh.state.validation)
    assert partial.state.best_params == fresh.state.best_params
    assert partial.state.cv_score == fresh.state.cv_score
    assert partial.state.test_metrics == fresh.state.test_metrics


def test_force_reruns_the_named_stage_and_everything_after_it(run_with):
    client = MlflowClient()
    forced = run_with("cache.force=[tune]")
    assert cache_status(client, forced.run_id) == {
        "ingest": "hit", "preprocess": "hit", "features": "hit",
        "tune": "forced", "train": "forced", "evaluate": "forced", "register": "forced",
    }
    tune = stage_runs(client, forced.run_id)["tune"]
    trials = client.search_runs([tune.info.experiment_id], f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    assert len(trials) == 3  # really tuned again
    # a forced register registers a new version of the same model
    assert forced.state.registered_version != "1"

    only_register = run_with("cache.force=[register]")
    status = cache_status(client, only_register.run_id)
    assert status.pop("register") == "forced"
    assert set(status.values()) == {"hit"}


def test_cache_disabled_runs_everything_but_still_stores_outputs(run_with):
    client = MlflowClient()
    off = run_with("data.n_rows=550", "cache.enabled=false")
    runs = stage_runs(client, off.run_id)
    assert {r.data.tags["mlcycle.cache"] for r in runs.values()} == {"off"}
    assert {r.data.tags["mlcycle.cache_reason"] for r in runs.values()} == {"cache.enabled=false"}
    # outputs and fingerprints are recorded, so the next cached run can reuse them
    assert all("mlcycle.fingerprint" in r.data.tags for r in runs.values())
    on = run_with("data.n_rows=550")
    assert cache_status(client, on.run_id) == dict.fromkeys(STAGES, "hit")
