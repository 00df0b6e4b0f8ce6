"""An Optuna study as mlcycle uses it: definitions, storages, samplers, pruners, the trial
loop every worker runs, and reaping trials of dead workers. Pure: no mlflow, no hydra.

* ``work``: the trial loop of every worker (a thread, a spawned process, or a
  ``mlcycle tune-worker`` on another machine). Each trial reports the mean score of the
  folds so far, so a pruner can stop a hopeless trial after its first folds. Results reach
  the caller through ``on_trial`` (the tune stage turns them into MLflow runs off the
  trial's critical path).
* a study target: ``n_trials`` counts the study's finished trials, so a study resumed after
  a crash runs only what is missing. Trials whose worker died (a SIGKILL, a lost machine)
  do not count: heartbeats (RDB storages) or the owner's pid (same host, ``core.liveness``)
  turn them into FAIL and they are retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mlcycle.config.load import as_dict, from_plain
from mlcycle.config.schema import Config, EstimatorSpec, TuneConfig
from mlcycle.core.liveness import owner_is_dead, owner_token
from mlcycle.core.modeling import build_estimator, iter_fold_scores
from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.space import enqueue_each_family, suggest_configuration
from mlcycle.core.tuning.storage import (
    LOCK_TIMEOUT,
    claim_lock,
    make_pruner,
    make_sampler,
    open_storage,
)

OWNER_ATTR = "mlcycle.worker"  # host:pid:start of the process running the trial
ERROR_ATTR = "mlcycle.error"  # the objective raised: the trial counts as done, not retried
POLL_SECONDS = 1.0


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
    worker: str = ""
    family: str = ""  # the estimator family the trial drew (model=auto) or the model's own


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
    pruner = make_pruner(search.tune.pruner, len(objective.folds), search.tune.pruner_startup_trials)
    if create:
        study = optuna.create_study(
            study_name=search.study_name, storage=storage, direction=objective.direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
        enqueue_each_family(study, objective.families)
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


def reap_dead_trials(study: optuna.Study, max_retry: int) -> list[int]:
    """RUNNING trials whose worker process on this host is gone become FAIL and are queued
    again (like a heartbeat failure, but at once). Returns their numbers."""
    reaped = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if owner_is_dead(trial.user_attrs.get(OWNER_ATTR)) is not True:
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


class Quota:
    """Trial slots for one invocation, shared by its threads and spawned processes."""

    def __init__(self, slots: int, value: Any = None):
        self._value = value if value is not None else multiprocessing.get_context("spawn").Value("i", slots)

    @property
    def value(self) -> Any:
        return self._value

    def claim(self) -> bool:
        with self._value.get_lock():
            if self._value.value <= 0:
                return False
            self._value.value -= 1
            return True


def work(
    study: optuna.Study,
    objective: Objective,
    search: Search,
    *,
    quota: Quota | None = None,
    shared: bool = False,
    deadline: float | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    on_trial_start: Callable[[TrialStarted], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> WorkerStats:
    """Run trials until the study reaches ``search.tune.n_trials`` finished trials.

    A ``quota`` counts slots in memory: exact, and enough when the storage is this
    invocation's alone. A ``shared`` storage may have workers elsewhere: before each trial
    the loop counts the study's trials in the storage under the study's claim lock, held
    until the trial exists, so that racing workers never start more than ``n_trials``; and
    when the last trials are running elsewhere it waits for them, failing stale ones so
    that their retries run here. Both may apply (a worker told to run at most N trials of
    a shared study). ``on_trial_start`` hears of each trial as it begins, ``on_trial`` of
    each as it ends.
    """
    token = owner_token()
    persistent = search.tune.storage is not None
    pruning = search.tune.pruner != "none"
    blocked = 0.0
    ran = 0
    current: list[int] = []
    fold_scores: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    pruned_at: dict[int, int] = {}
    drawn: dict[int, str] = {}  # trial -> family

    claim = (claim_lock(search) if shared else None) or NO_LOCK

    def fn(trial: optuna.Trial) -> float:
        claim.release()  # the trial exists: the next count includes it
        current[:] = [trial.number]
        if on_trial_start is not None:
            begun = trial.datetime_start
            on_trial_start(TrialStarted(trial.number, begun.timestamp() if begun else time.time()))
        if persistent:
            trial.set_user_attr(OWNER_ATTR, token)
        try:
            family, params = suggest_configuration(trial, objective.families)
            drawn[trial.number] = family
            estimator = build_estimator(objective.families[family], params, objective.seed)
            scores = fold_scores.setdefault(trial.number, [])
            folds = list(objective.folds)
            for step, value in enumerate(iter_fold_scores(estimator, folds, objective.metric, objective.task, objective.classes)):
                scores.append(value)
                if not math.isfinite(value):
                    # undefined on this fold (roc_auc of a one-class fold) or overflowed: the mean
                    # would be too. Optuna fails a trial that returns NaN, without a traceback.
                    errors[trial.number] = f"{objective.metric} = {value} on CV fold {step + 1} of {len(folds)}"
                    trial.set_user_attr(ERROR_ATTR, errors[trial.number])
                    return float("nan")
                if pruning and step < len(folds) - 1:
                    # step = folds scored so far: the resource the pruner compares trials on
                    trial.report(float(np.mean(scores)), step + 1)
                    if trial.should_prune():
                        pruned_at[trial.number] = step + 1
                        raise optuna.TrialPruned(f"pruned after {step + 1} fold(s)")
            return float(np.mean(scores))
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            errors[trial.number] = message
            with contextlib.suppress(Exception):
                trial.set_user_attr(ERROR_ATTR, message[:2000])
            raise

    def callback(_: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        nonlocal blocked
        if on_trial is None:
            return
        result = TrialResult(
            number=frozen.number,
            params=dict(frozen.params),
            value=frozen.value if frozen.state == TrialState.COMPLETE else None,
            state=frozen.state.name,
            fold_scores=tuple(fold_scores.pop(frozen.number, ())),
            error=errors.pop(frozen.number, None),
            start_ms=_ms(frozen.datetime_start),
            end_ms=_ms(frozen.datetime_complete),
            pruned_step=pruned_at.pop(frozen.number, None),
            worker=token,
            family=drawn.pop(frozen.number, ""),
        )
        started = time.perf_counter()
        on_trial(result)
        blocked += time.perf_counter() - started

    try:
        while True:
            if should_stop is not None and should_stop():
                break
            if deadline is not None and time.time() >= deadline:
                break
            if shared:
                claim.acquire(LOCK_TIMEOUT)
                now = counts(study)
                if now.done >= search.tune.n_trials:
                    break
                if now.done + now.running >= search.tune.n_trials and now.waiting == 0:
                    # the last slots are taken elsewhere: wait, and take over any that died
                    claim.release()
                    reap_dead_trials(study, search.tune.max_retry)
                    fail_stale_trials(study)
                    time.sleep(POLL_SECONDS)
                    continue
            if quota is not None and not quota.claim():
                break
            try:
                study.optimize(fn, n_trials=1, catch=(Exception,), callbacks=[callback])
            except BaseException:
                # Terminated mid-trial (SIGTERM in the pipeline): Optuna leaves the trial
                # RUNNING; end it FAIL (no error attribute: it is not counted, and is re-run
                # on resume).
                for number in current:
                    with contextlib.suppress(Exception):
                        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                raise
            finally:
                claim.release()
            current.clear()
            ran += 1
    finally:
        claim.close()
    return WorkerStats(token, ran, blocked)


class _NoLock:
    """A storage of this invocation's own needs no claim lock (its quota is exact)."""

    def acquire(self, timeout: float | None = None) -> None:
        pass

    release = close = acquire


NO_LOCK = _NoLock()


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


