"""Hyperparameter search with Optuna. Pure: no mlflow, no hydra.

The study maximises or minimises the mean cross-validated score of the primary metric.
What this module adds to Optuna:

* ``work``: the trial loop every worker runs (a thread, a spawned process, or a
  ``mlcycle tune-worker`` on another machine). Each trial reports the mean score of the
  folds so far, so a pruner can stop a hopeless trial after its first folds. Results reach
  the caller through ``on_trial`` (the tune stage turns them into MLflow runs on a
  background thread, off the trial's critical path).
* a study target: ``n_trials`` counts the study's finished trials, so a study resumed after
  a crash runs only what is missing. Trials whose worker died (a SIGKILL, a lost machine)
  do not count: heartbeats (RDB storages) or the owner's pid (same host) turn them into
  FAIL and they are retried.
* ``optimize``: one invocation's trials in ``n_jobs`` threads or processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import queue as queue_module
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mlcycle.config import PRUNERS, SAMPLERS, EstimatorSpec, Task
from mlcycle.evaluation import greater_is_better
from mlcycle.liveness import owner_is_dead, owner_token
from mlcycle.modeling import Fold, build_estimator, iter_fold_scores

OWNER_ATTR = "mlcycle.worker"  # host:pid:start of the process running the trial
ERROR_ATTR = "mlcycle.error"  # the objective raised: the trial counts as done, not retried
POLL_SECONDS = 1.0


# --------------------------------------------------------------------------- definitions
@dataclass(frozen=True)
class Objective:
    """What a trial scores: an estimator spec on prepared CV folds. Picklable."""

    spec: EstimatorSpec
    folds: tuple[Fold, ...]
    metric: str
    task: Task
    classes: tuple
    seed: int

    @property
    def direction(self) -> str:
        return "maximize" if greater_is_better(self.metric) else "minimize"


@dataclass(frozen=True)
class Search:
    """How to search: study, storage, sampler, pruner, target. Picklable."""

    study_name: str
    storage: str | None = None
    n_trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "none"
    pruner_startup_trials: int = 5
    seed: int = 0
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    # BLAS threads per trial (None: the library's default). Trials parallelise over
    # n_jobs; inside one trial, multithreaded BLAS on these problem sizes spins more than it
    # computes (docs/benchmarks.md: logistic regression 2.7x slower with 2 threads).
    blas_threads: int | None = 1


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

    # the original fields, kept for callers that read them
    @property
    def n_complete(self) -> int:
        return self.counts.complete

    @property
    def n_pruned(self) -> int:
        return self.counts.pruned

    @property
    def n_failed(self) -> int:
        return self.counts.failed


def study_name(prefix: str, definition: dict[str, Any]) -> str:
    """``<prefix>-<12 hex>``: the same search definition always gives the same study."""
    payload = json.dumps(definition, sort_keys=True, default=str).encode()
    return f"{prefix}-{hashlib.sha256(payload).hexdigest()[:12]}"


# --------------------------------------------------------------------------- storage
def is_shared(storage: str | None) -> bool:
    """Storages that workers in other processes or on other machines may join."""
    return bool(storage) and storage.startswith(("postgresql", "mysql", "journal:///"))


def open_storage(search: Search) -> optuna.storages.BaseStorage | None:
    """The Optuna storage for ``search.storage``; None means in memory.

    RDB storages (sqlite, PostgreSQL, MySQL) get heartbeats: a trial whose worker stops
    beating for ``grace_period`` seconds becomes FAIL and is retried up to ``max_retry``
    times. A journal file has no heartbeats; its dead workers are found by pid instead.
    """
    url = search.storage
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            _with_driver(url),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=search.heartbeat_interval,
            grace_period=search.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=search.max_retry),
        )


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
    raise ValueError(f"unknown sampler {name!r}; known: {list(SAMPLERS)}")


def make_pruner(name: str, n_folds: int, startup_trials: int) -> optuna.pruners.BasePruner:
    """Pruners see one step per CV fold: the mean score of the folds so far."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=n_folds, reduction_factor=3)
    raise ValueError(f"unknown pruner {name!r}; known: {list(PRUNERS)}")


def load_study(search: Search, objective: Objective, *, worker_index: int = 0, create: bool = False) -> optuna.Study:
    """Open (``create``: create if missing) the study; worker ``i`` seeds its sampler with
    ``seed + i`` so parallel workers do not draw the same points."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(search)
    sampler = make_sampler(search.sampler, search.seed + worker_index)
    pruner = make_pruner(search.pruner, len(objective.folds), search.pruner_startup_trials)
    if create:
        study = optuna.create_study(
            study_name=search.study_name, storage=storage, direction=objective.direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
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
def suggest(trial: optuna.Trial, search_space: dict[str, Any]) -> dict[str, Any]:
    """Draw one value per search-space entry ({type, low, high, log, choices})."""
    params: dict[str, Any] = {}
    for name, space in search_space.items():
        kind = space["type"]
        if kind == "float":
            params[name] = trial.suggest_float(name, float(space["low"]), float(space["high"]), log=bool(space.get("log", False)))
        elif kind == "int":
            params[name] = trial.suggest_int(name, int(space["low"]), int(space["high"]), log=bool(space.get("log", False)))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(space["choices"]))
        else:
            raise ValueError(f"search space {name!r}: unknown type {kind!r}")
    return params


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
    should_stop: Callable[[], bool] | None = None,
) -> WorkerStats:
    """Run trials until the study reaches ``search.n_trials`` finished trials.

    A ``quota`` counts slots in memory: exact, and enough when the storage is this
    invocation's alone. A ``shared`` storage may have workers elsewhere: before each trial
    the loop counts the study's trials in the storage (a race between workers may add a
    few extra trials), and when the last trials are running elsewhere it waits for them,
    failing stale ones so that their retries run here. Both may apply (a worker told to
    run at most N trials of a shared study).
    """
    token = owner_token()
    persistent = search.storage is not None
    pruning = search.pruner != "none"
    blocked = 0.0
    ran = 0
    current: list[int] = []
    fold_scores: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    pruned_at: dict[int, int] = {}

    def fn(trial: optuna.Trial) -> float:
        current[:] = [trial.number]
        if persistent:
            trial.set_user_attr(OWNER_ATTR, token)
        try:
            params = suggest(trial, objective.spec.search_space)
            estimator = build_estimator(objective.spec, params, objective.seed)
            scores = fold_scores.setdefault(trial.number, [])
            folds = list(objective.folds)
            for step, value in enumerate(iter_fold_scores(estimator, folds, objective.metric, objective.task, objective.classes)):
                scores.append(value)
                if pruning and step < len(folds) - 1:
                    # step = folds scored so far: the resource the pruner compares trials on
                    trial.report(float(np.mean(scores)), step + 1)
                    if trial.should_prune():
                        pruned_at[trial.number] = step + 1
                        raise optuna.TrialPruned(f"pruned after {step + 1} fold(s)")
            mean = float(np.mean(scores))
            if not math.isfinite(mean):
                raise ValueError(f"non-finite {objective.metric}: {mean}")
            return mean
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
        )
        started = time.perf_counter()
        on_trial(result)
        blocked += time.perf_counter() - started

    while True:
        if should_stop is not None and should_stop():
            break
        if deadline is not None and time.time() >= deadline:
            break
        if shared:
            now = counts(study)
            if now.done >= search.n_trials:
                break
            if now.done + now.running >= search.n_trials and now.waiting == 0:
                # the last slots are taken elsewhere: wait, and take over any that died
                reap_dead_trials(study, search.max_retry)
                fail_stale_trials(study)
                time.sleep(POLL_SECONDS)
                continue
        if quota is not None and not quota.claim():
            break
        try:
            study.optimize(fn, n_trials=1, catch=(Exception,), callbacks=[callback])
        except BaseException:
            # Terminated mid-trial (SIGTERM in the pipeline): Optuna leaves the trial
            # RUNNING; end it FAIL (no error attribute: it is not counted, and is re-run on
            # resume).
            for number in current:
                with contextlib.suppress(Exception):
                    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            raise
        current.clear()
        ran += 1
    return WorkerStats(token, ran, blocked)


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


# --------------------------------------------------------------------------- one invocation
def optimize(
    objective: Objective,
    search: Search,
    *,
    n_jobs: int = 1,
    parallel: str = "process",
    on_trial: Callable[[TrialResult], None] | None = None,
    on_start: Callable[[Counts, int], None] | None = None,
    max_trials: int | None = None,
    worker_seed: int = 0,
) -> StudyResult:
    """Create or resume the study, run this invocation's trials, summarise the study.

    ``parallel="thread"``: ``n_jobs`` threads share one study object. ``"process"``: this
    process plus ``n_jobs - 1`` spawned workers (fresh interpreters, so no lock or open
    connection is inherited); their results come back over a queue and reach ``on_trial``
    in this process. In-memory storage cannot be shared by processes, so it becomes a
    journal file in a temporary folder for the duration. ``on_start(counts, slots)`` is
    called once the study is open (for a progress bar). ``max_trials`` caps the trials
    this invocation runs (a ``tune-worker``'s share). ``worker_seed`` offsets the sampler
    seeds, so that independent workers on one study do not draw the same points.
    """
    started = time.time()
    deadline = started + search.timeout if search.timeout else None
    with contextlib.ExitStack() as stack:
        temporary = n_jobs > 1 and parallel == "process" and not search.storage
        if temporary:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mlcycle-study-"))
            search = replace(search, storage=f"journal:///{folder.lstrip('/')}/study.log")
            shared = False
        else:
            shared = is_shared(search.storage)
        # Created once, before any worker starts (concurrent first-time schema creation
        # crashes workers on a fresh database).
        study = load_study(search, objective, worker_index=worker_seed, create=True)
        reap_dead_trials(study, search.max_retry)  # a crashed earlier attempt on this host
        fail_stale_trials(study)  # ... or anywhere, once its heartbeat is old enough
        before = counts(study)
        # A storage of this invocation's own has nobody else running trials: its RUNNING
        # trials are stale (their heartbeats will fail them) and take no slot.
        slots = max(0, search.n_trials - before.done - (before.running if shared else 0))
        if max_trials is not None:
            slots = min(slots, max_trials)
        quota = Quota(slots) if not shared or max_trials is not None else None
        if on_start is not None:
            on_start(before, slots)
        stack.enter_context(thread_limits(n_jobs, search.blas_threads))
        if n_jobs == 1:
            stats = [work(study, objective, search, quota=quota, shared=shared, deadline=deadline, on_trial=on_trial)]
        elif parallel == "thread":
            with ThreadPoolExecutor(n_jobs, thread_name_prefix="mlcycle-trial") as pool:
                futures = [
                    pool.submit(_work_in_thread, _threads_per_job(n_jobs), study, objective, search,
                                quota=quota, shared=shared, deadline=deadline, on_trial=on_trial)
                    for _ in range(n_jobs)
                ]
                stats = [f.result() for f in futures]
        else:
            stats = _in_processes(study, objective, search, n_jobs, quota, shared, deadline, on_trial, worker_seed)
        result = summarize(study, before.done, stats)
        if temporary:  # the journal file goes with its folder: keep the study in memory
            memory = optuna.storages.InMemoryStorage()
            optuna.copy_study(from_study_name=search.study_name, from_storage=open_storage(search), to_storage=memory)
            result = replace(result, study=optuna.load_study(study_name=search.study_name, storage=memory))
        return result


def summarize(study: optuna.Study, n_before: int, stats: list[WorkerStats]) -> StudyResult:
    final = counts(study)
    if final.complete == 0:
        trials = study.get_trials(deepcopy=False)
        first_error = next((t.user_attrs[ERROR_ATTR] for t in trials if ERROR_ATTR in t.user_attrs), "unknown")
        raise RuntimeError(f"all {len(trials)} tuning trials failed; first error: {first_error}")
    best = study.best_trial
    return StudyResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        best_number=best.number,
        counts=final,
        n_before=n_before,
        n_run=sum(s.trials for s in stats),
        blocked_seconds=sum(s.blocked_seconds for s in stats),
        study=study,
    )


@contextlib.contextmanager
def thread_limits(n_jobs: int, blas_threads: int | None = None) -> Iterator[None]:
    """n_jobs parallel trials share the cores: each gets cores // n_jobs BLAS/OpenMP
    threads, and at most ``blas_threads`` BLAS threads (process-wide limits)."""
    threads = _threads_per_job(n_jobs) if n_jobs > 1 else None
    with _limits(threads, blas_threads):
        yield


@contextlib.contextmanager
def _limits(threads: int | None, blas_threads: int | None) -> Iterator[None]:
    """Cap every thread pool at ``threads`` and BLAS at ``min(threads, blas_threads)``."""
    blas = min((n for n in (threads, blas_threads) if n), default=None)
    if threads is None and blas is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with contextlib.ExitStack() as stack:
        if threads is not None:
            stack.enter_context(threadpool_limits(limits=threads))
        if blas is not None and blas != threads:
            stack.enter_context(threadpool_limits(limits=blas, user_api="blas"))
        yield


def _work_in_thread(threads: int, *args, **kwargs) -> WorkerStats:
    """``work`` in a pool thread, with its own OpenMP limit.

    OpenMP's thread count is per calling thread: the limit set in the main thread does not
    reach threads started after it, whose OpenMP regions would use every core. Two trial
    threads at 2 OpenMP threads each on 2 cores spin against each other and halve the
    throughput (measured: HGB, 20 trials, x0.50 of n_jobs=1). BLAS limits are process-wide
    and already set by the caller.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="openmp"):
        return work(*args, **kwargs)


def _threads_per_job(n_jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // n_jobs)


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class _WorkerFailed:
    index: int
    message: str


def _in_processes(study, objective, search, n_jobs, quota, shared, deadline, on_trial, worker_seed) -> list[WorkerStats]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    quota_value = quota.value if quota is not None else None
    procs = [
        ctx.Process(
            target=_process_main,
            args=(objective, search, worker_seed + index, quota_value, shared, deadline, results, os.getpid(), _threads_per_job(n_jobs)),
            name=f"mlcycle-tune-{index}",
            daemon=True,
        )
        for index in range(1, n_jobs)
    ]
    finished: list[WorkerStats | _WorkerFailed] = []
    drainer = threading.Thread(target=_drain, args=(results, procs, finished, on_trial), name="mlcycle-drain", daemon=True)
    try:
        for proc in procs:
            proc.start()
        drainer.start()
        own = work(study, objective, search, quota=quota, shared=shared, deadline=deadline, on_trial=on_trial)
        for proc in procs:
            proc.join()
        drainer.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # the worker ends its running trial FAIL and exits
                proc.join(10)
    failures = [f for f in finished if isinstance(f, _WorkerFailed)]
    if failures:
        raise RuntimeError(f"tuning worker process {failures[0].index} failed: {failures[0].message}")
    reported = len(finished)
    if reported < len(procs):
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"{len(procs) - reported} tuning worker process(es) died without reporting (exit codes {codes})")
    return [own, *(f for f in finished if isinstance(f, WorkerStats))]


def _drain(results, procs, finished: list, on_trial) -> None:
    """Hand the workers' trial results to ``on_trial`` in this process, until every worker
    has reported its end (or died)."""
    while len(finished) < len(procs):
        try:
            item = results.get(timeout=0.5)
        except queue_module.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                return
            continue
        if isinstance(item, TrialResult):
            if on_trial is not None:
                on_trial(item)
        else:
            finished.append(item)


def _process_main(objective, search, index, quota_value, shared, deadline, results, parent_pid, threads) -> None:
    """A spawned worker: open the study, run trials, send results and stats back."""

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")  # Optuna ends the running trial FAIL

    signal.signal(signal.SIGTERM, terminate)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        with _limits(threads, search.blas_threads):
            study = load_study(search, objective, worker_index=index)
            quota = Quota(0, quota_value) if quota_value is not None else None
            stats = work(
                study, objective, search, quota=quota, shared=shared, deadline=deadline, on_trial=results.put,
                should_stop=lambda: os.getppid() != parent_pid,  # the parent died: stop
            )
        results.put(stats)
    except BaseException as exc:
        results.put(_WorkerFailed(index, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        results.close()
        results.join_thread()


# --------------------------------------------------------------------------- remote workers
def describe_objective(schema, plan, preprocess, derived: dict, spec: EstimatorSpec, metric: str,
                       cv_folds: int, seed: int, time_ordered: bool) -> dict[str, Any]:
    """Everything but the rows that another machine needs to rebuild the objective exactly:
    JSON-ready (the tune stage logs it next to the training rows)."""
    from dataclasses import asdict

    pre = asdict(preprocess)
    pre["clip"] = preprocess.clip.value
    return {
        "schema": {**asdict(schema), "task": schema.task.value, "classes": list(schema.classes)},
        "plan": asdict(plan),
        "preprocess": pre,
        "derived": dict(derived),
        "spec": {"estimator": spec.estimator, "params": dict(spec.params), "search_space": dict(spec.search_space)},
        "metric": metric,
        "cv_folds": cv_folds,
        "seed": seed,
        "time_ordered": time_ordered,
    }


def objective_from_description(description: dict[str, Any], train) -> Objective:
    """Rebuild the Objective from ``describe_objective``'s dict and the training rows:
    same preprocessor, same folds, same scores as the stage that described it."""
    from mlcycle.config import Clip, PreprocessConfig
    from mlcycle.data import Schema
    from mlcycle.features import FeaturePlan
    from mlcycle.modeling import build_preprocessor, cv_splitter, prepare_folds

    raw = description["schema"]
    task = Task(raw["task"])
    schema = Schema(
        target=raw["target"], task=task, numeric=tuple(raw["numeric"]), categorical=tuple(raw["categorical"]),
        datetime=tuple(raw["datetime"]), classes=tuple(raw["classes"]),
    )
    plan = FeaturePlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in description["plan"].items()})
    pre = dict(description["preprocess"])
    preprocess = PreprocessConfig(**{**pre, "clip": Clip(pre["clip"])})
    seed = int(description["seed"])
    preprocessor = build_preprocessor(schema, preprocess, plan, dict(description["derived"]), seed)
    splitter = cv_splitter(task, int(description["cv_folds"]), seed, time_ordered=bool(description["time_ordered"]))
    X, y = train[list(schema.features)], train[schema.target]
    folds = prepare_folds(preprocessor, X, y, splitter)
    raw_spec = description["spec"]
    spec = EstimatorSpec(estimator=raw_spec["estimator"], params=dict(raw_spec["params"]), search_space=dict(raw_spec["search_space"]))
    return Objective(spec, tuple(folds), description["metric"], task, schema.classes, seed)


# --------------------------------------------------------------------------- plots
def study_figures(study: optuna.Study, seed: int) -> tuple[dict, dict[str, float]]:
    """Optimization history and parameter importances (matplotlib figures by file name),
    and the importances themselves. Needs 1 and 2 complete trials respectively; with fewer,
    that figure is left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: dict = {}
    importances: dict[str, float] = {}
    if not complete:
        return figures, importances
    values = [t.value for t in complete]
    best = np.maximum.accumulate(values) if study.direction.name == "MAXIMIZE" else np.minimum.accumulate(values)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([t.number for t in complete], values, s=14, label="trial", alpha=0.7)
    ax.step([t.number for t in complete], best, where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel="objective (mean CV score)", title="Optimization history")
    ax.legend(loc="best")
    figures["optimization_history.png"] = fig

    names = list(dict.fromkeys(p for t in complete for p in t.params))
    varying = [p for p in names if len({repr(t.params.get(p)) for t in complete if p in t.params}) > 1]
    if len(complete) >= 2 and varying:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
                importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
        except (RuntimeError, ValueError):
            importances = {}
    if importances:
        names = list(importances)[::-1]
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(names)))
        ax.barh(names, [importances[n] for n in names])
        ax.set(xlabel="importance (fANOVA)", title="Hyperparameter importances")
        fig.tight_layout()
        figures["param_importances.png"] = fig
    return figures, {k: float(v) for k, v in importances.items()}
