"""One invocation's trials: ``optimize`` runs them in ``n_jobs`` threads or processes,
summarises the study and draws its figures. Pure: no mlflow, no hydra."""

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import optuna
from optuna.trial import TrialState

from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.storage import is_shared, open_storage
from mlcycle.core.tuning.study import (
    ERROR_ATTR,
    Counts,
    Quota,
    Search,
    StudyResult,
    TrialResult,
    WorkerStats,
    counts,
    fail_stale_trials,
    load_study,
    reap_dead_trials,
    work,
)
from mlcycle.errors import TuningFailed


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
    deadline = started + search.tune.timeout if search.tune.timeout else None
    with contextlib.ExitStack() as stack:
        temporary = n_jobs > 1 and parallel == "process" and not search.tune.storage
        if temporary:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mlcycle-study-"))
            search = search.using(storage=f"journal:///{folder.lstrip('/')}/study.log")
            shared = False
        else:
            shared = is_shared(search.tune.storage)
        # Created once, before this invocation's workers start (other invocations creating
        # Optuna's tables at the same time wait on open_storage's lock).
        study = load_study(search, objective, worker_index=worker_seed, create=True)
        reap_dead_trials(study, search.tune.max_retry)  # a crashed earlier attempt on this host
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
        stack.enter_context(thread_limits(n_jobs, search.tune.blas_threads))
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
    threads at 2 OpenMP threads each on 2 cores spin against each other (docs/benchmarks.md,
    parallel trials). BLAS limits are process-wide and already set by the caller.
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
        with _limits(threads, search.tune.blas_threads):
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
