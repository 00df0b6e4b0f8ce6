"""One invocation's trials: ``optimize`` runs them in ``n_jobs`` threads or processes and
summarises the study (its figures: ``figures.py``). Pure: no mlflow, no hydra."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import optuna

from mlcycle.core import threads
from mlcycle.core.evaluation import greater_is_better
from mlcycle.core.tuning.ensemble import FamilyBests
from mlcycle.core.tuning.loop import Quota, work
from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.storage import is_shared, open_storage
from mlcycle.core.tuning.study import (
    ERROR_ATTR,
    Counts,
    Search,
    StudyResult,
    TrialResult,
    TrialStarted,
    WorkerStats,
    counts,
    fail_stale_trials,
    load_study,
    reap_dead_trials,
)
from mlcycle.errors import TuningFailed


def optimize(
    objective: Objective,
    search: Search,
    *,
    n_jobs: int | None = 1,
    parallel: str = "process",
    threads_per_fit: int | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    on_trial_start: Callable[[TrialStarted], None] | None = None,
    on_start: Callable[[Counts, int], None] | None = None,
    max_trials: int | None = None,
    worker_seed: int = 0,
    keep_predictions: bool = False,
) -> StudyResult:
    """Create or resume the study, run this invocation's trials, summarise the study.

    ``parallel="thread"``: ``n_jobs`` threads share one study object. ``"process"``: this
    process plus ``n_jobs - 1`` spawned workers (fresh interpreters, so no lock or open
    connection is inherited); their results come back over a queue and reach ``on_trial``
    in this process. In-memory storage cannot be shared by processes, so it becomes a
    journal file in a temporary folder for the duration. ``n_jobs=None`` (auto): the first
    trial runs here, and its duration decides whether workers are worth starting
    (``jobs_worth_starting``). Each trial's fits use ``threads.per_job(n_jobs,
    threads_per_fit)`` threads. ``on_start(counts, slots)`` is called once the study is
    open, ``on_trial_start`` as each trial begins (a worker process's reach it through the
    queue too; for a progress bar). ``max_trials`` caps the trials this invocation runs (a
    ``tune-worker``'s share). ``worker_seed`` offsets the sampler seeds, so that independent
    workers on one study do not draw the same points. ``keep_predictions``: the result
    holds the out-of-fold predictions of each family's best trial among this invocation's
    (``StudyResult.predictions``), so that the ensemble selection need not refit them.
    """
    started = time.time()
    bests = FamilyBests(greater_is_better(objective.metric)) if keep_predictions else None
    if bests is not None:
        on_trial = bests.listening(on_trial)
    deadline = started + search.tune.timeout if search.tune.timeout else None
    auto = n_jobs is None
    # auto spreads over processes only where they may share the study (memory becomes a journal)
    spreadable = parallel == "thread" or not search.tune.storage or is_shared(search.tune.storage)
    most = (threads.cores() if spreadable else 1) if auto else n_jobs
    with contextlib.ExitStack() as stack:
        temporary = most > 1 and parallel == "process" and not search.tune.storage
        if temporary:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mlcycle-study-"))
            search = search.using(storage=f"journal:///{folder.lstrip('/')}/study.log")
            shared = False
        else:
            shared = is_shared(search.tune.storage)
        # Created once, before this invocation's workers start (other invocations creating
        # Optuna's tables at the same time wait on open_storage's lock).
        study = load_study(search, objective, worker_index=worker_seed, create=True)
        reap_dead_trials(study, search.tune.max_retry, shared)  # a crashed earlier attempt on this host
        fail_stale_trials(study)  # ... or anywhere, once its heartbeat is old enough
        before = counts(study)
        # A storage of this invocation's own has nobody else running trials: its RUNNING
        # trials are stale (their heartbeats will fail them) and take no slot.
        slots = max(0, search.tune.n_trials - before.done - (before.running if shared else 0))
        if max_trials is not None:
            slots = min(slots, max_trials)
        quota = Quota(slots) if not shared or max_trials is not None else None
        if on_start is not None:
            on_start(before, slots)
        blas = search.tune.blas_threads
        loop = {"shared": shared, "deadline": deadline, "on_trial": on_trial, "on_trial_start": on_trial_start,
                "keep_predictions": keep_predictions}
        stats: list[WorkerStats] = []
        if auto:
            n_jobs = 1
            if most > 1 and slots > 1 and (quota is None or quota.claim()):
                with threads.limited(threads.per_job(1, threads_per_fit), blas):
                    first = time.perf_counter()
                    stats.append(work(study, objective, search, quota=Quota(1), **loop))
                    n_jobs = jobs_worth_starting(time.perf_counter() - first, slots - 1, most)
        stack.enter_context(threads.limited(threads.per_job(n_jobs, threads_per_fit), blas))
        if n_jobs == 1:
            stats.append(work(study, objective, search, quota=quota, **loop))
        elif parallel == "thread":
            with ThreadPoolExecutor(n_jobs, thread_name_prefix="mlcycle-trial") as pool:
                futures = [
                    pool.submit(_work_in_thread, threads.per_job(n_jobs, threads_per_fit), study, objective, search,
                                quota=quota, **loop)
                    for _ in range(n_jobs)
                ]
                stats += [f.result() for f in futures]
        else:
            stats += _in_processes(study, objective, search, n_jobs, quota, shared, deadline, on_trial, on_trial_start,
                                   worker_seed, threads.per_job(n_jobs, threads_per_fit), keep_predictions)
        result = summarize(study, before.done, stats)
        if temporary:  # the journal file goes with its folder: keep the study in memory
            memory = optuna.storages.InMemoryStorage()
            optuna.copy_study(from_study_name=search.study_name, from_storage=open_storage(search), to_storage=memory)
            result = replace(result, study=optuna.load_study(study_name=search.study_name, storage=memory))
        return replace(result, n_jobs=n_jobs, predictions=bests.by_trial() if bests is not None else {})


# A spawned worker's start-up: a fresh interpreter importing pandas, scikit-learn and Optuna,
# then rebuilding the folds (measured in docs/benchmarks.md, "busy machine"). Workers are
# started only when the trials left would take PAYBACK times that on this process alone.
WORKER_START_SECONDS = 3.0
PAYBACK = 4


def jobs_worth_starting(trial_seconds: float, trials_left: int, cores: int) -> int:
    """How many parallel trials (this process included) to run the rest of a study with,
    given how long one trial took here: one while worker start-up would not pay back."""
    if trials_left < 2 or trial_seconds * trials_left < WORKER_START_SECONDS * PAYBACK:
        return 1
    return min(cores, trials_left)


def summarize(study: optuna.Study, n_before: int, stats: list[WorkerStats]) -> StudyResult:
    final = counts(study)
    if final.complete == 0:
        trials = study.get_trials(deepcopy=False)
        first_error = next((t.user_attrs[ERROR_ATTR] for t in trials if ERROR_ATTR in t.user_attrs), "unknown")
        raise TuningFailed(f"all {len(trials)} tuning trials failed; first error: {first_error}")
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


def _work_in_thread(openmp_threads: int | None, *args, **kwargs) -> WorkerStats:
    """``work`` in a pool thread, with its own OpenMP limit.

    OpenMP's thread count is per calling thread: the limit set in the main thread does not
    reach threads started after it, whose OpenMP regions would use every core. Two trial
    threads at 2 OpenMP threads each on 2 cores spin against each other (docs/benchmarks.md,
    parallel trials). BLAS limits are process-wide and already set by the caller.
    """
    with threads.limited_openmp(openmp_threads):
        return work(*args, **kwargs)


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class _WorkerFailed:
    index: int
    message: str


def _in_processes(study, objective, search, n_jobs, quota, shared, deadline, on_trial, on_trial_start,
                  worker_seed, per_worker_threads, keep_predictions) -> list[WorkerStats]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    quota_value = quota.value if quota is not None else None
    procs = [
        ctx.Process(
            target=_process_main,
            args=(objective, search, worker_seed + index, quota_value, shared, deadline, results, os.getpid(),
                  per_worker_threads, keep_predictions),
            name=f"mlcycle-tune-{index}",
            daemon=True,
        )
        for index in range(1, n_jobs)
    ]
    finished: list[WorkerStats | _WorkerFailed] = []
    drainer = threading.Thread(target=_drain, args=(results, procs, finished, on_trial, on_trial_start),
                               name="mlcycle-drain", daemon=True)
    try:
        for proc in procs:
            proc.start()
        drainer.start()
        own = work(study, objective, search, quota=quota, shared=shared, deadline=deadline, on_trial=on_trial,
                   on_trial_start=on_trial_start, keep_predictions=keep_predictions)
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


def _drain(results, procs, finished: list, on_trial, on_trial_start) -> None:
    """Hand the workers' trial starts and results to ``on_trial_start`` and ``on_trial`` in
    this process, until every worker has reported its end (or died)."""
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
        elif isinstance(item, TrialStarted):
            if on_trial_start is not None:
                on_trial_start(item)
        else:
            finished.append(item)


def _process_main(objective, search, index, quota_value, shared, deadline, results, parent_pid, openmp_threads,
                  keep_predictions) -> None:
    """A spawned worker: open the study, run trials, send results and stats back."""

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")  # Optuna ends the running trial FAIL

    signal.signal(signal.SIGTERM, terminate)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        with threads.limited(openmp_threads, search.tune.blas_threads):
            study = load_study(search, objective, worker_index=index)
            quota = Quota(0, quota_value) if quota_value is not None else None
            stats = work(
                study, objective, search, quota=quota, shared=shared, deadline=deadline, on_trial=results.put,
                on_trial_start=results.put, should_stop=lambda: os.getppid() != parent_pid,  # the parent died: stop
                keep_predictions=keep_predictions,
            )
        results.put(stats)
    except BaseException as exc:
        results.put(_WorkerFailed(index, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        results.close()
        results.join_thread()
