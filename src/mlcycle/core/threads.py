"""How many threads one model fit (or prediction) may use. Pure: no mlflow, no hydra.

Histogram gradient boosting runs OpenMP teams whose threads spin while they wait for
work. On a machine with other work running, two spinning threads per fit on two cores
cost a factor of 20 and more (docs/benchmarks.md, "busy machine"); one thread per fit
never spins, and parallelism then comes from trials in separate processes
(``tune.n_jobs``). ``threads_per_fit`` (a top-level config key, default 1) sets it:

* ``preset`` writes it into the environment before numpy or scikit-learn are imported
  (the OpenMP and BLAS runtimes read it once, at start), so every thread and every child
  process (spawned tune workers, ``mlflow models serve``) starts with it;
* ``limited`` caps the running process's thread pools (threadpoolctl) for code that
  imported the libraries earlier (a notebook, the tests);
* ``per_job`` is what each of ``n_jobs`` parallel trials gets.

``threads_per_fit: null`` leaves the libraries' defaults (every core), as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def per_job(n_jobs: int, threads_per_fit: int | None) -> int | None:
    """Threads for each of ``n_jobs`` parallel trials: an equal share of the cores, at most
    ``threads_per_fit``; None (the libraries' default) for one job without a cap."""
    share = max(1, cores() // n_jobs)
    if threads_per_fit is None:
        return share if n_jobs > 1 else None
    return min(threads_per_fit, share)


def preset(threads_per_fit: int | None, environ: dict | None = None) -> None:
    """Set the thread count in the environment, for runtimes not started yet and for child
    processes. A no-op for ``None`` (the libraries' defaults)."""
    if threads_per_fit is None:
        return
    target = os.environ if environ is None else environ
    for var in ENV_VARS:
        target[var] = str(threads_per_fit)


@contextlib.contextmanager
def limited(threads: int | None, blas_threads: int | None = None) -> Iterator[None]:
    """Cap every thread pool of this process at ``threads`` and BLAS at
    ``min(threads, blas_threads)`` while the block runs (None: no cap). BLAS limits are
    process-wide; OpenMP's holds for the calling thread only (a thread started later begins
    with the environment's value): a pool thread sets its own (``limited_openmp``)."""
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


@contextlib.contextmanager
def limited_openmp(threads: int | None) -> Iterator[None]:
    """OpenMP's limit for the calling thread (OpenMP settings are per thread)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="openmp"):
        yield
