"""The tune group composes for every option, and bad tuning settings fail at compose time."""

from __future__ import annotations

import pytest

from mlcycle.config.load import flatten
from mlcycle.config.schema import Parallel
from mlcycle.core.masking import mask_uri, mask_values
from mlcycle.errors import ConfigError
from tests.conftest import compose


@pytest.mark.parametrize("option", ["tpe", "random", "cmaes", "qmc"])
def test_every_sampler_option_composes_with_the_documented_defaults(option):
    tune = compose([f"tune={option}"]).tune
    assert tune.sampler == option
    assert (tune.n_trials, tune.cv_folds, tune.n_jobs, tune.pruner, tune.storage) == (20, 3, None, "none", None)
    assert tune.parallel is Parallel.process


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tune.storage=sqlite:////tmp/s.db", "tune.n_jobs=2"], "sqlite, which several processes must not share"),
        (["tune.pruner=patience"], r"tune.pruner=patience.*one of \[none, median, successive_halving, hyperband\]"),
        (["tune.sampler=grid"], r"tune.sampler=grid.*one of \[tpe, random, cmaes, qmc\]"),
        (["tune.n_jobs=0"], "tune.n_jobs must be at least 1"),
        (["tune.storage=redis://localhost"], "tune.storage 'redis://localhost'"),
        (["tune.grace_period=5", "tune.heartbeat_interval=10"], "grace_period larger"),
        (["tune.timeout=0"], "tune.timeout must be positive"),
        (["tune.fidelity=subsample"], "tune.fidelity=subsample reports low-fidelity scores for a pruner"),
        (["tune.fidelity=half"], r"tune.fidelity=half.*one of \[none, subsample\]"),
    ],
)
def test_bad_tuning_settings_fail_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_sqlite_with_threads_and_shareable_storages_with_processes_are_fine():
    compose(["tune.storage=sqlite:////tmp/s.db", "tune.n_jobs=2", "tune.parallel=thread"])
    compose(["tune.storage=journal:///tmp/s.log", "tune.n_jobs=2"])
    compose(["tune.storage=postgresql+psycopg2://u@db.example/optuna", "tune.n_jobs=4"])


def test_passwords_in_urls_never_reach_params():
    assert mask_uri("postgresql+psycopg2://bob:s3cret@db:5432/optuna") == "postgresql+psycopg2://bob:***@db:5432/optuna"
    assert mask_uri("postgresql://bob@db/optuna") == "postgresql://bob@db/optuna"
    assert mask_uri("postgresql://bob:p@ss@db/x") == "postgresql://bob:***@db/x"
    assert mask_uri("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    cfg = compose(["tune.storage=postgresql+psycopg2://bob:s3cret@db/optuna"])
    assert cfg.tune.storage.endswith("s3cret@db/optuna")  # the config itself keeps it
    assert mask_values(flatten(cfg))["tune.storage"] == "postgresql+psycopg2://bob:***@db/optuna"  # as logged
