"""Trial runs, written off the trial's critical path.

A finished trial becomes a ``TrialRecord``; a writer turns it into one child run of the
tune run: ``create_run`` (parent tag, create token, trial tags), one ``log_batch`` (params,
metrics), ``set_terminated`` (FINISHED / KILLED for pruned / FAILED). ``submit`` only
enqueues, so the trial loop never waits for the store.

Two writers, one contract (``submit``, then ``close``: everything written or an error):

* ``ThreadTrialWriter``: one background thread in this process. Used for local stores
  (sqlite, files).
* ``ProcessTrialWriter``: a forked child process. Used for a tracking server on Linux: the
  client's CPU per trial run (HTTP, JSON) then runs outside the trials' process and never
  holds their GIL (docs/benchmarks.md measures both). Fork rather than spawn: the child
  needs no imports (spawn would import MLflow again, which costs more than a short study's
  tracking), and MLflow keys its HTTP sessions by process id, so the child opens its own
  connections.

Nothing is lost when the child dies: each record gets its create token here, the child
acknowledges each record it finished, and ``close`` rewrites from this process every
record without an acknowledgement, under the same token; the ghost search that follows
keeps exactly one run per token (a half-written or unacknowledged run of the child is
ended and deleted). When this process dies instead, the child writes what it was already
sent and exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from mlcycle.core.masking import mask_uri
from mlcycle.errors import ConfigError
from mlcycle.tracking.runs import (
    KIND_TAG,
    KIND_TRIAL,
    PARENT_TAG,
    TOKEN_TAG,
    is_server_uri,
    new_token,
    param_text,
    remove_ghosts,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often a waiting side checks that the other one is still alive


@dataclass(frozen=True)
class TrialRecord:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    status: str  # FINISHED | FAILED | KILLED
    start_ms: int
    end_ms: int


def write_trial(client: MlflowClient, experiment_id: str, parent_run_id: str, record: TrialRecord, token: str) -> str:
    """One whole trial run in three calls, tagged with ``token`` (which finds it again if
    a retry or a rewrite made a second one). Returns the run id."""
    tags = {PARENT_TAG: parent_run_id, KIND_TAG: KIND_TRIAL, TOKEN_TAG: token, **record.tags}
    run = client.create_run(experiment_id, start_time=record.start_ms, tags=tags, run_name=record.name)
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        params=[Param(k, param_text(v)) for k, v in record.params.items()],
        metrics=[Metric(k, float(v), record.end_ms, 0) for k, v in record.metrics.items()],
    )
    client.set_terminated(run_id, status=record.status, end_time=record.end_ms)
    return run_id


class _Writer:
    """What both writers share: the written ids, the create tokens and the errors."""

    kind = "?"

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str):
        self._client = client
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self._errors: list[str] = []
        self.written: list[str] = []
        self._tokens: dict[str, str] = {}  # create token -> run id, to remove ghost trials

    def _write(self, record: TrialRecord, token: str | None = None) -> str:
        token = token or new_token()
        run_id = write_trial(self._client, self._experiment_id, self._parent, record, token)
        self._kept(token, run_id)
        return run_id

    def _kept(self, token: str, run_id: str) -> None:
        self._tokens[token] = run_id
        self.written.append(run_id)

    def _finish(self) -> None:
        if is_server_uri(self._client.tracking_uri):  # one search for all trials: drop runs duplicated by retries
            try:
                remove_ghosts(self._client, self._experiment_id, self._tokens, parent_run_id=self._parent)
            except Exception as exc:  # a ghost left now is removed by `mlcycle runs close-stale`
                log.warning("could not check trial runs for duplicates: %s", exc)
        if self._errors:
            raise RuntimeError(f"{len(self._errors)} trial run(s) could not be logged: {self._errors[0]}")


class ThreadTrialWriter(_Writer):
    """Writes trial runs from one background thread of this process."""

    kind = "thread"

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str):
        super().__init__(client, experiment_id, parent_run_id)
        self._queue: queue.Queue[TrialRecord | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mlcycle-trial-writer", daemon=True)
        self._thread.start()

    def submit(self, record: TrialRecord) -> None:
        self._queue.put(record)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._finish()

    def _work(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                self._write(record)
            except Exception as exc:  # reported by close(); keep writing the others
                self._errors.append(f"{record.name}: {exc}")


class ProcessTrialWriter(_Writer):
    """Writes trial runs from a forked child process (see the module docstring)."""

    kind = "process"

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str):
        super().__init__(client, experiment_id, parent_run_id)
        ctx = multiprocessing.get_context("fork")
        # Queues, not pipes: put() hands the record to a feeder thread and never blocks on a
        # full pipe, so a slow server cannot stall the trials.
        self._inbox = ctx.Queue()
        self._acks = ctx.Queue()
        self._records: dict[int, tuple[str, TrialRecord]] = {}  # seq -> (create token, record)
        self._lock = threading.Lock()
        self._process = ctx.Process(
            target=_child_main,
            args=(client, experiment_id, parent_run_id, self._inbox, self._acks, os.getpid()),
            name="mlcycle-trial-writer",
            daemon=True,  # never outlives a normal exit of this process (close() joins it first)
        )
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, record: TrialRecord) -> None:  # called from every trial thread
        token = new_token()
        with self._lock:
            seq = len(self._records)
            self._records[seq] = (token, record)
        self._inbox.put((seq, token, record))

    def close(self) -> None:
        try:
            self._collect()
        finally:
            self._inbox.cancel_join_thread()  # a dead child's unread records must not block exit
            self._inbox.close()
            self._acks.close()
            if self._process.is_alive():
                self._process.terminate()
        self._finish()

    def _collect(self) -> None:
        """Wait for the child's acknowledgements; write the unacknowledged records here."""
        self._inbox.put(None)
        done: set[int] = set()
        clean = False
        while not clean:
            try:
                message = self._acks.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                try:  # dead: whatever it sent before dying is still in the pipe
                    message = self._acks.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    break
            if message[0] == "done":
                _, seq, run_id = message
                done.add(seq)
                self._kept(self._records[seq][0], run_id)
            elif message[0] == "error":
                _, seq, error = message
                done.add(seq)
                self._errors.append(error)
            elif message[0] == "closed":
                clean = True
        self._process.join(timeout=30 if clean else 5)
        lost = [seq for seq in sorted(self._records) if seq not in done]
        if lost:
            log.warning(
                "the trial writer process ended (exit code %s) before writing %d trial run(s); "
                "writing them from this process", self._process.exitcode, len(lost),
            )
        for seq in lost:
            token, record = self._records[seq]
            try:
                self._write(record, token)  # a half-written run of the child: a ghost of this token
            except Exception as exc:
                self._errors.append(f"{record.name}: {exc}")


def _child_main(client, experiment_id, parent_run_id, inbox, acks, parent_pid) -> None:
    """The forked writer: write each record, acknowledge it, stop at None or when the
    parent is gone (after writing what it had been sent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then closes us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the pipeline's handler, inherited by fork
    with contextlib.suppress(OSError):
        os.nice(10)  # background work: where it shares a core with a trial, the trial goes first
    parent_gone = False
    while True:
        try:
            item = inbox.get(timeout=0 if parent_gone else POLL_SECONDS)
        except queue.Empty:
            if parent_gone:
                break  # drained
            parent_gone = os.getppid() != parent_pid
            continue
        if item is None:
            break
        seq, token, record = item
        try:
            acks.put(("done", seq, write_trial(client, experiment_id, parent_run_id, record, token)))
        except Exception as exc:
            acks.put(("error", seq, f"{record.name}: {exc}"))
    acks.put(("closed",))
    if parent_gone:  # nobody reads the acknowledgements: do not wait on a full pipe
        acks.cancel_join_thread()
    acks.close()
    acks.join_thread()


def process_writer_available() -> bool:
    """Fork is safe enough here only on Linux (macOS frameworks are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def writer_kind(kind: str, tracking_uri: str) -> str:
    """What ``kind`` (auto | thread | process) means for ``tracking_uri``: auto is the
    process writer for a tracking server on Linux, the thread writer otherwise. Raises
    ConfigError, naming the setting and the URI, where the process writer cannot work."""
    server = is_server_uri(tracking_uri)
    if kind == "auto":
        return "process" if server and process_writer_available() else "thread"
    if kind == "process" and not server:
        raise ConfigError(
            f"tune.trial_writer=process needs a tracking server (http:// or https://), "
            f"not {mask_uri(str(tracking_uri))}; use auto or thread"
        )
    if kind == "process" and not process_writer_available():
        raise ConfigError(f"tune.trial_writer=process needs fork, which is not used on {sys.platform}; use thread")
    if kind not in ("thread", "process"):
        raise ConfigError(f"tune.trial_writer must be auto, thread or process, got {kind!r}")
    return kind


def open_writer(client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str = "auto") -> _Writer:
    """The writer ``writer_kind`` picks for the client's tracking URI."""
    if writer_kind(kind, client.tracking_uri) == "process":
        try:
            return ProcessTrialWriter(client, experiment_id, parent_run_id)
        except (OSError, AssertionError) as exc:  # no fork (memory limits), or we are a daemonic process
            log.warning("could not start the trial writer process (%s); writing trial runs from a thread", exc)
    return ThreadTrialWriter(client, experiment_id, parent_run_id)
