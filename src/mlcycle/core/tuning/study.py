"""An Optuna study as mlcycle uses it: its definition (``Search``, the study name), opening
it, the records a trial leaves, counting its trials, and reaping trials of dead workers.
Pure: no mlflow, no hydra. The trial loop itself is ``loop.work``.

``n_trials`` counts the study's finished trials, so a study resumed after a crash runs only
what is missing. Trials whose worker died (a SIGKILL, a lost machine) do not count:
heartbeats (RDB storages) or the owner's pid (same host, ``core.liveness``) turn them into
FAIL and they are retried.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from mlcycle.config.load import as_dict, from_plain
from mlcycle.config.schema import Config, EstimatorSpec, TuneConfig
from mlcycle.core.liveness import owner_is_dead
from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.space import enqueue_each_family
from mlcycle.core.tuning.storage import (
    make_pruner,
    make_sampler,
    open_storage,
)

OWNER_ATTR = "mlcycle.worker"  # host:pid:start of the process running the trial
ERROR_ATTR = "mlcycle.error"  # the objective raised: the trial counts as done, not retried
OWNERLESS_GRACE_S = 120.0  # a RUNNING trial in a shared storage still unnamed after this is dead


@dataclass(frozen=True)
class Search:
    """Which study, and how to search it (the ``tune`` config group). Picklable."""

    study_name: str
    tune: TuneConfig

    @classmethod
    def of(cls, study_name: str, **settings: Any) -> Search:
        """A search with these ``tune`` settings (seed 0 unless given): for code without a config."""
        unknown = set(settings) - {f.name for f in fields(TuneConfig)}
        if unknown:
            raise TypeError(f"unknown tune setting(s) {sorted(unknown)}")
        return cls(study_name, from_plain(TuneConfig, {"seed": 0, **settings}))

    def using(self, **settings: Any) -> Search:
        """The same search with some ``tune`` settings replaced (a worker's storage, timeout)."""
        return replace(self, tune=replace(self.tune, **settings))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the storage (its URL may carry a password)."""
        settings = {k: v for k, v in as_dict(self.tune).items() if k not in ("storage", "study_name")}
        return {**settings, "study_name": self.study_name}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], storage: str | None) -> Search:
        """The inverse of ``to_dict`` (older tune runs logged a subset of the fields: the
        rest take their defaults)."""
        raw = dict(raw)
        name = raw.pop("study_name")
        known = {f.name for f in fields(TuneConfig)}
        return cls.of(name, **{k: v for k, v in raw.items() if k in known}, storage=storage)


@dataclass(frozen=True)
class TrialResult:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str  # COMPLETE | PRUNED | FAIL
    fold_scores: tuple[float, ...]
    error: str | None
    start_ms: int
    end_ms: int
    pruned_step: int | None = None  # pruned trials: how many folds were scored
    stopped: bool = False  # pruned because tune.timeout passed (not by the pruner)
    worker: str = ""
    family: str = ""  # the estimator family the trial drew (model=auto) or the model's own
    # tune.fidelity=subsample: (step in ninths of the training rows, mean CV score) per rung reached
    rung_scores: tuple[tuple[int, float], ...] = ()
    # with keep_predictions: a complete trial's out-of-fold predictions, one array per CV fold
    predictions: tuple[Any, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class TrialStarted:
    """A worker began trial ``number`` at ``at`` (seconds since the epoch): for a progress bar."""

    number: int
    at: float


@dataclass(frozen=True)
class WorkerStats:
    worker: str
    trials: int
    blocked_seconds: float  # time the trial loop spent inside on_trial


@dataclass(frozen=True)
class Counts:
    done: int  # COMPLETE + PRUNED + FAIL raised by the objective: these count toward n_trials
    complete: int
    pruned: int
    failed: int
    lost: int  # FAIL because the worker died (not counted; retried)
    running: int
    waiting: int


@dataclass(frozen=True)
class StudyResult:
    best_params: dict[str, Any]
    best_value: float
    best_number: int
    counts: Counts
    n_before: int  # finished trials found in the storage when this invocation started
    n_run: int  # trials run by this invocation
    blocked_seconds: float
    study: optuna.Study = field(repr=False)
    n_jobs: int = 1  # parallel trials this invocation ran with (decided here when tune.n_jobs is auto)
    # with keep_predictions: trial number -> out-of-fold predictions, for each family's best
    # trial among this invocation's (core/tuning/ensemble.py reuses them instead of refitting)
    predictions: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)


def study_name(prefix: str, definition: dict[str, Any]) -> str:
    """``<prefix>-<12 hex>``: the same search definition always gives the same study."""
    payload = json.dumps(definition, sort_keys=True, default=str).encode()
    return f"{prefix}-{hashlib.sha256(payload).hexdigest()[:12]}"


def search_for(cfg: Config, families: dict[str, EstimatorSpec], metric: str, data_digest: str | None) -> Search:
    """The pipeline's search. Unless ``tune.study_name`` names it, the study's name hashes
    everything that decides a trial's score (data, preprocessing, features, estimators and
    search spaces, metric, folds, seed), so a rerun of the same search resumes the same
    study and a changed one starts a new study."""
    resolved = as_dict(cfg)
    definition = {
        "experiment": cfg.mlflow.experiment_name,
        "data_digest": data_digest,
        "data": {k: v for k, v in resolved["data"].items() if k != "name"},
        "preprocess": resolved["preprocess"],
        "features": resolved["features"],
        **_estimators(families),
        "metric": metric,
        "cv_folds": cfg.tune.cv_folds,
        "seed": cfg.seed,
        # the steps a trial reports mean other things at another fidelity (absent when none:
        # existing studies keep their names)
        **({"fidelity": str(cfg.tune.fidelity)} if str(cfg.tune.fidelity) != "none" else {}),
    }
    name = cfg.tune.study_name or study_name(f"{cfg.mlflow.experiment_name}-{cfg.model.name}", definition)
    return Search(name, cfg.tune)


def _estimators(families: dict[str, EstimatorSpec]) -> dict[str, Any]:
    def of(spec: EstimatorSpec) -> dict[str, Any]:
        return {"estimator": spec.estimator, "params": spec.params, "search_space": spec.search_space}

    if len(families) == 1:  # as before model=auto: an existing study keeps its name
        return {"estimator": of(next(iter(families.values())))}
    return {"families": {name: of(spec) for name, spec in families.items()}}


def load_study(search: Search, objective: Objective, *, worker_index: int = 0, create: bool = False) -> optuna.Study:
    """Open (``create``: create if missing) the study; worker ``i`` seeds its sampler with
    ``seed + i`` so parallel workers do not draw the same points."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(search)
    sampler = make_sampler(search.tune.sampler, search.tune.seed + worker_index)
    pruner = make_pruner(search.tune.pruner, objective.max_step, search.tune.pruner_startup_trials)
    if create:
        study = optuna.create_study(
            study_name=search.study_name, storage=storage, direction=objective.direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
        enqueue_each_family(study, objective.families, starts=search.tune.cheap_start)
    else:
        try:
            study = optuna.load_study(study_name=search.study_name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise ValueError(f"study {search.study_name!r} not found in the storage") from None
    if study.direction.name.lower() != objective.direction:
        raise ValueError(
            f"study {search.study_name!r} in the storage is {study.direction.name.lower()}d, "
            f"but {objective.metric} must be {objective.direction}d"
        )
    return study


# --------------------------------------------------------------------------- the trial loop
def counts(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs)
    complete, pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    return Counts(
        done=complete + pruned + failed,
        complete=complete,
        pruned=pruned,
        failed=failed,
        lost=states.count(TrialState.FAIL) - failed,
        running=states.count(TrialState.RUNNING),
        waiting=states.count(TrialState.WAITING),
    )


def _is_dead(trial: optuna.trial.FrozenTrial, shared: bool) -> bool:
    owner = trial.user_attrs.get(OWNER_ATTR)
    if owner is not None:
        return owner_is_dead(owner) is True
    # Killed between Optuna creating the trial and the worker naming itself (before its
    # first heartbeat, too). Nobody else runs trials in a storage that is not shared; in a
    # shared one a live worker names itself within milliseconds, so give it a grace.
    begun = trial.datetime_start
    return not shared or (begun is not None and (datetime.now() - begun).total_seconds() > OWNERLESS_GRACE_S)


def reap_dead_trials(study: optuna.Study, max_retry: int, shared: bool = True) -> list[int]:
    """RUNNING trials whose worker process on this host is gone become FAIL and are queued
    again (like a heartbeat failure, but at once). Returns their numbers."""
    reaped = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(trial, shared):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        reaped.append(trial.number)
        failed = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, failed)
    return reaped


def fail_stale_trials(study: optuna.Study) -> None:
    """Heartbeat check (RDB storages) plus the pid check for this host."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
