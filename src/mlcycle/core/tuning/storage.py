"""Where a study lives and how it draws trials: Optuna storages, samplers and pruners, and
the locks that let workers start together on a fresh database and count trials exactly."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from mlcycle.config.schema import Pruner, Sampler
from mlcycle.core.locks import AdvisoryLock, FileLock, holding

SCHEMA_LOCK = "mlcycle.optuna-schema"
LOCK_TIMEOUT = 300.0  # seconds; the locks here are held for milliseconds

if TYPE_CHECKING:
    from mlcycle.core.tuning.study import Search


def is_shared(storage: str | None) -> bool:
    """Storages that workers in other processes or on other machines may join."""
    return bool(storage) and storage.startswith(("postgresql", "mysql", "journal:///"))


def open_storage(search: Search) -> optuna.storages.BaseStorage | None:
    """The Optuna storage for ``search.tune.storage``; None means in memory.

    RDB storages (sqlite, PostgreSQL, MySQL) get heartbeats: a trial whose worker stops
    beating for ``grace_period`` seconds becomes FAIL and is retried up to ``max_retry``
    times. A journal file has no heartbeats; its dead workers are found by pid instead.
    """
    url = search.tune.storage
    if not url:
        return None
    if url.startswith("journal:///"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # threads wait for the write lock
    url = _with_driver(url)
    # Optuna creates its tables on first use; processes doing that at once on a fresh
    # PostgreSQL database collide (optuna#1092: duplicate key in pg_type), so one at a time.
    schema_lock = holding(AdvisoryLock(url, SCHEMA_LOCK), LOCK_TIMEOUT) if _is_postgres(url) else contextlib.nullcontext()
    with schema_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=search.tune.heartbeat_interval,
            grace_period=search.tune.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=search.tune.max_retry),
        )


def claim_lock(search: Search) -> AdvisoryLock | FileLock | None:
    """The lock a worker holds from counting a shared study's trials until its next trial
    exists (``study.work``), so that workers racing for the last slots never run more than
    ``n_trials``: a PostgreSQL advisory lock named after the study, or a lock file beside a
    journal file. None for other storages (a MySQL study may get a few extra trials)."""
    url = search.tune.storage or ""
    if _is_postgres(url):
        return AdvisoryLock(_with_driver(url), f"mlcycle.optuna-claim:{search.study_name}")
    if url.startswith("journal:///"):
        return FileLock(Path(url.removeprefix("journal://") + ".claim.lock"))
    return None


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgresql+"))


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads plain ``postgresql://`` as psycopg 3; mlcycle ships psycopg2."""
    if url.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Seeded samplers. CMA-ES and QMC cannot sample categorical parameters; they hand
    those to a seeded TPE (CMA-ES) or random (QMC) sampler, without a warning per trial."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed), warn_independent_sampling=False
            )
        if name == "qmc":
            return optuna.samplers.QMCSampler(
                seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False
            )
    raise ValueError(f"unknown sampler {name!r}; known: {[s.value for s in Sampler]}")


def make_pruner(name: str, n_steps: int, startup_trials: int) -> optuna.pruners.BasePruner:
    """Pruners see one step per CV fold (the mean score of the folds so far), or with
    tune.fidelity=subsample the steps 1 and 3 of ``n_steps`` = 9 ninths of the training rows
    (core/tuning/fidelity.py: successive halving's rungs with reduction factor 3)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=n_steps, reduction_factor=3)
    raise ValueError(f"unknown pruner {name!r}; known: {[p.value for p in Pruner]}")
