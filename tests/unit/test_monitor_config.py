"""The monitor's config (conf/monitor.yaml + conf/monitor/) and rebuilding a run's config."""

from __future__ import annotations

import pytest

from mlcycle.config.load import compose, from_resolved
from mlcycle.config.monitor import RetrainOn
from mlcycle.core.data import digest
from mlcycle.core.datasets import generate_sessions
from mlcycle.errors import ConfigError
from tests.conftest import compose as compose_pipeline


def monitor(*overrides):
    return compose(list(overrides), config_name="monitor")


def test_defaults_and_overrides():
    cfg = monitor()
    assert cfg.monitor.model_name == "mlcycle-ecommerce" and cfg.monitor.model_alias == "champion"
    assert cfg.monitor.retrain_on is RetrainOn.decay and cfg.batch.path is None
    cfg = monitor("batch.drift=2", "monitor.retrain_on=never", "monitor.model_version=3")
    assert cfg.batch.drift == 2.0 and cfg.monitor.retrain_on is RetrainOn.never and cfg.monitor.model_version == "3"


@pytest.mark.parametrize("override", ["monitor.retrain_on=sometimes", "monitor.alpha=abc", "monitor.nonsense=1", "batch.rows=5"])
def test_bad_overrides_fail_at_compose_time(override):
    with pytest.raises(Exception):  # noqa: B017 - hydra/omegaconf raise several types
        monitor(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [("monitor.alpha=1.5", "monitor.alpha"), ("monitor.n_bins=1", "monitor.n_bins"),
     ("monitor.max_drifted_share=0", "max_drifted_share"), ("monitor.retrain_overrides=[oops]", "key=value"),
     ("monitor.retrain_reference_fraction=1.5", "retrain_reference_fraction")],
)
def test_values_a_type_cannot_check(override, message):
    with pytest.raises(ConfigError, match=message):
        monitor(override)


def test_from_resolved_round_trips_a_resolved_config_with_overrides():
    from mlcycle.config.load import as_dict

    original = compose_pipeline(["model=random_forest", "tune.n_trials=7"])
    rebuilt = from_resolved(as_dict(original))
    assert rebuilt == original
    changed = from_resolved(as_dict(original), ["tune.n_trials=2", "data.n_rows=100"])
    assert changed.tune.n_trials == 2 and changed.data.n_rows == 100 and changed.model.name == "random_forest"
    with pytest.raises(ConfigError, match="does not fit"):
        from_resolved(as_dict(original), ["tune.n_trials=many"])


def test_generator_without_drift_is_unchanged():
    # drift effects may be tuned; the reference distribution (drift=0) must never move
    assert digest(generate_sessions(3000, 42, 0.0)) == "5d493d12078bb988"
    assert digest(generate_sessions(3000, 7, 0.0)) == "db60ef1aa2eae897"
