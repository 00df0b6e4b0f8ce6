"""``mlcycle tune-worker``: join a running (or finished) study from another process or machine.

The tune stage of a pipeline with a shared ``tune.storage`` (PostgreSQL, or a journal file
on one machine) logs what a worker needs on its tune run: the training rows and the
objective. A worker downloads them, rebuilds the same CV folds, and runs trials until the
study has ``n_trials`` finished trials; every trial is logged as a child run of that tune
run. Start as many as you like, on as many machines as can reach the storage and the
tracking server.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from mlcycle.cli import command
from mlcycle.commands import _common
from mlcycle.errors import MlcycleError

STORAGE_ENV = "MLCYCLE_TUNE_STORAGE"


class WorkerError(MlcycleError):
    """The worker cannot join: bad storage, unknown run, missing artifacts."""


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("tune-worker", __doc__.split("\n\n")[0])
    parser.add_argument(
        "--tune-run-id", required=True,
        help="the tune stage run whose study to join, or the root run of its pipeline",
    )
    parser.add_argument(
        "--storage", default=None,
        help=f"the study's storage URL (default: ${STORAGE_ENV}); keep passwords in PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument("--n-trials", type=_optional_int, default=None, help="study target (default: the tune run's n_trials)")
    parser.add_argument("--max-trials", type=_optional_int, default=None, help="run at most this many trials here")
    parser.add_argument("--n-jobs", type=int, default=None, help="trials in parallel on this machine (default: auto, as tune.n_jobs)")
    parser.add_argument("--parallel", choices=("process", "thread"), default="process")
    parser.add_argument("--timeout", type=float, default=None, help="seconds; no new trial starts after it")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else the project's store")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # "" is what `mlflow run` passes for an empty parameter: fall back to the variable
    args.storage = args.storage or os.environ.get(STORAGE_ENV) or None
    return run(args)


def _worker_seed() -> int:
    """A seed offset of this worker's own: workers seeded alike would draw the same trials."""
    import secrets

    return 1000 + secrets.randbelow(2**30)


def _optional_int(text: str) -> int | None:
    """An int, or None for "" (`mlflow run` passes an empty parameter as '')."""
    return int(text) if text.strip() else None


def run(args: argparse.Namespace) -> int:
    from mlcycle.core.masking import mask_uri

    storage = args.storage
    if not storage:
        raise WorkerError(f"no storage: pass --storage or set {STORAGE_ENV}")
    if storage.startswith("sqlite:"):
        raise WorkerError(
            f"{storage}: sqlite cannot be shared between processes; run the study on PostgreSQL "
            "(tune.storage=postgresql+psycopg2://...) or, on one machine, a journal file (journal:///path)"
        )
    from mlcycle.core import tuning

    if not tuning.is_shared(storage):
        raise WorkerError(f"{mask_uri(storage)}: not a storage workers can share (PostgreSQL, MySQL or journal:///path)")
    for name, value in (("--n-trials", args.n_trials), ("--max-trials", args.max_trials), ("--n-jobs", args.n_jobs)):
        if value is not None and value < 1:
            raise WorkerError(f"{name} must be at least 1, got {value}")

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")  # the running trial ends FAIL, runs get written

    signal.signal(signal.SIGTERM, terminate)
    from mlcycle.commands import _common
    from mlcycle.config.load import compose
    from mlcycle.core import liveness
    from mlcycle.tracking.runs import (
        KIND_PIPELINE,
        KIND_TAG,
        KIND_TUNE_WORKER,
        STAGE_TAG,
        stage_outputs,
    )
    from mlcycle.tracking.study import fetch_objective, run_study

    cfg = compose()
    client, uri = _common.connect(cfg, args.tracking_uri)
    try:
        tune_run = client.get_run(args.tune_run_id)
    except Exception:
        raise WorkerError(f"tune run {args.tune_run_id!r} not found in {mask_uri(uri)}") from None
    if tune_run.data.tags.get(KIND_TAG) == KIND_PIPELINE:  # a pipeline's root: its tune stage
        tune_run = stage_outputs(client, args.tune_run_id, "tune")
        if tune_run is None:
            raise WorkerError(f"pipeline run {args.tune_run_id} has no tune stage run")
        args.tune_run_id = tune_run.info.run_id
    if tune_run.data.tags.get(STAGE_TAG) != "tune":
        raise WorkerError(f"run {args.tune_run_id} is not a tune stage run")
    if tune_run.data.params.get("storage", "memory") == "memory":
        raise WorkerError(f"tune run {args.tune_run_id} kept its study in memory; nothing to join")

    if run_id := os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e tune_worker`
        # its owner now, not at the end: the stale-run sweep closes a project run that
        # carries no mlcycle tag after its grace period (hygiene.never_started)
        for key, value in {**liveness.current().tags(), KIND_TAG: KIND_TUNE_WORKER}.items():
            client.set_tag(run_id, key, value)
    started = time.perf_counter()
    objective, search = fetch_objective(args.tune_run_id, storage)
    prepared = time.perf_counter() - started
    search = search.using(timeout=args.timeout, **({"n_trials": args.n_trials} if args.n_trials is not None else {}))
    try:
        tuning.load_study(search, objective)  # must exist: never start a new study by accident
    except ValueError as exc:
        raise WorkerError(f"{exc} ({mask_uri(storage)})") from None

    done = run_study(
        client, tune_run.info.experiment_id, args.tune_run_id, objective, search, progress=not args.quiet,
        n_jobs=args.n_jobs, parallel=args.parallel, max_trials=args.max_trials, worker_seed=_worker_seed(),
        threads_per_fit=cfg.threads_per_fit,
    )
    result = done.result
    if run_id := os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e tune_worker`
        client.set_tag(run_id, "mlcycle.tune_run_id", args.tune_run_id)
        client.log_metric(run_id, "trials_run", result.n_run)
    print(
        f"mlcycle tune-worker: ran {result.n_run} trial(s) of study {search.study_name} "
        f"under tune run {args.tune_run_id} (folds prepared in {prepared:.1f} s); the study has "
        f"{result.counts.done}/{search.tune.n_trials} finished, best {objective.metric} "
        f"{result.best_value:.4f} (trial {result.best_number})"
    )
    return 0
