"""Shared helpers for the tuning benchmarks: config, data prepared once, a local server."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def compose(overrides: list[str]):
    """The project's real config with overrides, as typed dataclasses."""
    from mlcycle.config.load import compose as compose_config

    return compose_config(list(overrides))


def prepare_state(cfg):
    """What ingest, preprocess and features hand to tune, without tracking."""
    from mlcycle.core import data
    from mlcycle.core.cleaning import anomaly_mask, drop_duplicate_rows
    from mlcycle.core.features import plan_features
    from mlcycle.core.modeling import build_preprocessor
    from mlcycle.stages.base import State

    loaded = data.load(cfg.data)
    schema, frame = data.infer_schema(loaded.frame, cfg.data, loaded.source)
    splits = data.split(frame, schema, cfg.data)
    train, _ = drop_duplicate_rows(splits.train)
    mask = anomaly_mask(train[list(schema.numeric)], cfg.preprocess.anomaly_contamination, cfg.seed)
    train = train[~mask].reset_index(drop=True)
    derived = dict(cfg.data.derived_features)
    plan = plan_features(
        train, schema.numeric, schema.categorical, schema.datetime, derived,
        cfg.features.max_onehot_cardinality, cfg.features.high_cardinality_encoder,
        tuple(cfg.features.date_parts), cfg.features.scale_numeric,
    )
    pre = build_preprocessor(schema, cfg.preprocess, plan, derived, cfg.seed)
    return State(
        data=loaded, schema=schema, splits=splits, data_digest=data.digest(frame), train=train,
        validation=splits.validation, plan=plan, preprocessor=pre,
    )


def limit_threads(threads: int | None) -> None:
    """Cap BLAS/OpenMP threads for the whole run (this process; spawned workers inherit
    the environment variables)."""
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def median(values: list[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(check, url: str, unreachable: type[Exception]) -> bool:
    """The tracking server answers /health and a read: mlcycle's own start-up check."""
    try:
        check(url, 2.0)
    except unreachable:
        return False
    return True


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server --workers 1`` on 127.0.0.1 with the job runner off; stopped on exit."""
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination", str(folder / "server-artifacts"),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    from mlcycle.errors import TrackingUnreachable
    from mlcycle.tracking.remote import check_tracking_store

    try:
        deadline = time.monotonic() + 180
        while not _answers(check_tracking_store, url, TrackingUnreachable):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {folder / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def temp_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mlcycle-bench-")
