"""Step-cache rules that need no run: which config a stage's fingerprint reads, when caching
is off, the cache config and its shorthand, and Parquet round trips of the stored splits."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlcycle import stages
from mlcycle.cli import normalize
from mlcycle.config.load import as_dict, from_resolved
from mlcycle.config.schema import STAGES, DataConfig, Source
from mlcycle.core import data
from mlcycle.errors import ConfigError
from mlcycle.tracking.cache import disabled_reason, stage_config, stage_fingerprint
from tests.conftest import compose

CODE = {"mlcycle_version": "0", "git_commit": "abc", "source_digest": "s", "python": "3", "libraries": {}}


def fingerprints(cfg, code=CODE) -> dict[str, str]:
    out, upstream = {}, None
    for stage in STAGES:
        config = stage_config(as_dict(cfg), stages.get(stage).reads)
        upstream = out[stage] = stage_fingerprint(stage, config, upstream, code, {})
    return out


def first_changed(base: dict[str, str], other: dict[str, str]) -> str | None:
    return next((s for s in STAGES if base[s] != other[s]), None)


@pytest.fixture(scope="module")
def base_fps():
    return fingerprints(compose())


@pytest.mark.parametrize(
    ("override", "first"),
    [
        ("mlflow.experiment_name=elsewhere", None),  # where runs go is not an input
        ("mlflow.run_name=x", None),
        ("stages=[ingest,preprocess]", None),
        ("cache.allow_dirty=true", None),
        ("registry.champion_alias=gold", "register"),
        ("registry.enabled=false", "register"),
        ("evaluate.plots=false", "evaluate"),
        ("evaluate.primary_metric=pr_auc", "tune"),
        ("model.families.hist_gradient_boosting.classifier.search_space.learning_rate.high=0.5", "tune"),
        ("model=random_forest", "tune"),
        ("model.threshold.objective=none", "train"),  # chosen after tuning: no new study
        ("model.threshold.cost_fn=5", "train"),
        ("tune.n_trials=7", "tune"),
        ("tune.cv_folds=5", "tune"),
        ("features.scale_numeric=false", "features"),
        ("preprocess.drop_anomalies=false", "preprocess"),
        ("data.n_rows=100", "ingest"),
        ("data.drift=0.5", "ingest"),
        ("seed=1", "ingest"),
    ],
)
def test_a_change_invalidates_the_first_stage_that_reads_it(base_fps, override, first):
    changed = fingerprints(compose([override]))
    assert first_changed(base_fps, changed) == first
    if first is not None:  # ... and, through the chain, every stage after it
        assert all(base_fps[s] != changed[s] for s in STAGES[STAGES.index(first):])


def test_code_version_and_key_order_are_part_of_every_fingerprint(base_fps):
    cfg = compose()
    assert first_changed(base_fps, fingerprints(cfg, {**CODE, "git_commit": "def"})) == "ingest"
    assert first_changed(base_fps, fingerprints(cfg, {**CODE, "libraries": {"scikit-learn": "0"}})) == "ingest"
    # derived features in another order are other columns in another order
    cfg.data.derived_features = dict(reversed(list(cfg.data.derived_features.items())))
    assert first_changed(base_fps, fingerprints(cfg)) == "ingest"


def test_every_stage_declares_the_config_it_reads():
    assert [stages.get(name).name for name in STAGES] == list(STAGES)
    resolved = as_dict(compose())
    for name in STAGES:
        for dotted in stages.get(name).reads:
            node = resolved
            for part in dotted.split("."):
                node = node[part]  # KeyError: the table names a key the config lacks


@pytest.mark.parametrize(
    ("lineage", "allow_dirty", "reason"),
    [
        ({"git_commit": "abc", "git_dirty": "false"}, False, None),
        ({"git_commit": "abc", "git_dirty": "true"}, False, "uncommitted changes"),
        ({"git_commit": "unknown", "git_dirty": "unknown"}, False, "not a git checkout"),
        ({"git_commit": "abc", "git_dirty": "true"}, True, None),
        ({"git_commit": "unknown", "git_dirty": "unknown"}, True, None),
    ],
)
def test_caching_needs_a_known_clean_code_version_unless_allowed(lineage, allow_dirty, reason):
    cfg = compose([f"cache.allow_dirty={str(allow_dirty).lower()}"])
    got = disabled_reason(cfg, lineage)
    assert (got is None) if reason is None else (reason in got)


def test_cache_config_and_the_cache_false_shorthand():
    assert normalize(["model=random_forest", "cache=True"]) == ["model=random_forest", "cache.enabled=true"]
    cfg = compose(normalize(["cache=false", "cache.force=[tune,train]"]))
    assert cfg.cache.enabled is False
    assert cfg.cache.force == ["tune", "train"]
    assert compose().cache.enabled is True
    with pytest.raises(ConfigError, match=r"cache.force: unknown stage\(s\) \['tuning'\]"):
        compose(["cache.force=[tuning]"])


def test_a_resolved_config_round_trips_and_unknown_keys_are_named():
    cfg = compose(["model=random_forest", "seed=3"])
    assert from_resolved(as_dict(cfg)) == cfg
    resolved = as_dict(cfg)
    resolved["tune"]["n_workers"] = 4  # from a newer mlcycle
    with pytest.raises(ConfigError, match="n_workers"):
        from_resolved(resolved)
    del resolved["tune"]["n_workers"]
    del resolved["cache"]  # from an older mlcycle: defaults fill in
    assert from_resolved(resolved).cache.enabled is True

    # ... except the decision threshold: a model trained before it existed labelled at 0.5,
    # so reproducing or retraining it does too
    del resolved["model"]["threshold"]
    assert from_resolved(resolved).model.threshold.objective == "none"
    assert compose().model.threshold.objective == "f1"


def parquet_round_trip(frame: pd.DataFrame) -> pd.DataFrame:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return pd.read_parquet(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("labels", [None, ("no", "yes")], ids=["int-target", "text-target"])
def test_restore_types_undoes_what_parquet_changes(labels):
    from mlcycle.core.datasets import generate_sessions

    raw = generate_sessions(300, 1, 0.0)
    if labels:
        raw["purchased"] = np.where(raw["purchased"] == 1, *reversed(labels))
    cfg = DataConfig(name="t", source=Source.file, path="x", target="purchased", drop_columns=["session_id"])
    schema, frame = data.infer_schema(raw, cfg, "t")
    assert frame[list(schema.categorical)].isna().any().any()  # missing text cells are covered

    back = parquet_round_trip(frame)
    assert data.digest(back) != data.digest(frame)  # what the restore is for
    restored = data.restore_types(back, schema)
    pd.testing.assert_frame_equal(restored, frame)
    assert data.digest(restored) == data.digest(frame)
