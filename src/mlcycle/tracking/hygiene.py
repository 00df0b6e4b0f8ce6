"""Closing runs left RUNNING by a process that no longer exists (SIGKILL, OOM, power loss).

One mechanism, used by ``mlcycle runs close-stale``, by a tune stage that resumes a
study a dead process was working on, and by every command that opens an experiment to log
into (``open_experiment``: train, predict, monitor), which first closes the runs there whose
owner process on this host is gone, so a SIGKILL or an out-of-memory kill leaves nothing
RUNNING past the next command:

* ``judge`` decides, for each RUNNING run, from its owner tags (``core.liveness``; trial
  runs inherit their parent's owner):

  - owner alive on this host -> keep;
  - a duplicate left by a retried ``runs/create`` (another run holds its create token)
    -> delete (``runs.end_ghost``);
  - owner gone (no such pid, or the pid now belongs to another process) -> close;
  - a run MLflow's project submitter (``mlflow run``) created and nothing ever started in
    (``never_started``, after ``SUBMIT_GRACE_S``) -> close;
  - owner on another host, or no owner tags (runs made outside mlcycle): liveness cannot
    be proved, so closed only with ``older_than`` and only when started before that.

* ``with_trees`` extends each close to the RUNNING runs of the same pipeline tree;
* ``apply`` ends closed runs FAILED, with ``mlcycle.error`` saying why and who closed
  them, and ``mlcycle.closed_stale=true``.

Optuna's own trials are reaped by ``core.tuning`` with the same liveness judgement.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace

from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException

from mlcycle.core import liveness
from mlcycle.tracking.runs import (
    ERROR_TAG,
    KIND_TAG,
    KIND_TRIAL,
    MAX_TAG_LENGTH,
    PARENT_TAG,
    TOKEN_TAG,
    children,
    connect,
    end_ghost,
    prepare_experiment,
    root_of,
    search_all,
)

log = logging.getLogger(__name__)

CLOSED_TAG = "mlcycle.closed_stale"
CLOSE, DELETE, KEEP = "close", "delete", "keep"
BY_COMMAND = "`mlcycle runs close-stale`"

# MLflow's project submitter (`mlflow run`) creates its run before it builds anything: a
# uv environment (local backend), or a Docker image it builds and pushes (Kubernetes). An
# mlcycle entry point tags that run with its owner within seconds of starting; a run with
# no mlcycle tag after this long was never started, and nothing will ever end it.
SUBMIT_GRACE_S = 30 * 60
# MLflow's own tags (mlflow.utils.mlflow_tags), read here only
SOURCE_TYPE_TAG, BACKEND_TAG, IMAGE_TAG = "mlflow.source.type", "mlflow.project.backend", "mlflow.docker.image.id"


@dataclass(frozen=True)
class Verdict:
    run_id: str
    run_name: str
    experiment_id: str
    action: str  # close | delete | keep
    reason: str


def running_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> list[Run]:
    """RUNNING runs of these experiments (plus an optional filter, e.g. on a tag)."""
    where = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
    runs: list[Run] = []
    for i in range(0, len(experiment_ids), 100):
        runs += search_all(client, experiment_ids[i : i + 100], where, run_view_type=ViewType.ACTIVE_ONLY)
    return runs


def judge(client: MlflowClient, runs: list[Run], older_than_s: float | None = None, now_ms: int | None = None) -> list[Verdict]:
    """Decide, for each RUNNING run, whether to close it, delete it (a ghost) or keep it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    by_id = {r.info.run_id: r for r in runs}
    owners: dict[str, liveness.Owner | None] = {}

    def owner_of(run: Run, depth: int = 0) -> liveness.Owner | None:
        run_id = run.info.run_id
        if run_id not in owners:
            owner = liveness.from_tags(run.data.tags)
            parent_id = run.data.tags.get(PARENT_TAG)
            if owner is None and parent_id and depth < 10:
                parent = by_id.get(parent_id) or _get(client, parent_id)
                owner = owner_of(parent, depth + 1) if parent is not None else None
            owners[run_id] = owner
        return owners[run_id]

    verdicts = []
    for run in runs:
        info = run.info
        owner = owner_of(run)
        alive = liveness.is_alive(owner) if owner is not None else None
        old_enough = older_than_s is not None and (now_ms - (info.start_time or now_ms)) >= older_than_s * 1000
        token = run.data.tags.get(TOKEN_TAG)
        twin = None  # only runs that may be ended are searched for a twin
        if token and (alive is False or old_enough):
            twin = _twin(client, info.experiment_id, token, info.run_id)
        if alive is True:
            action, reason = KEEP, f"{owner.describe()} is running"
        elif twin:
            action, reason = DELETE, f"duplicate of run {twin} (created by a retried request)"
        elif alive is False:
            action, reason = CLOSE, f"{owner.describe()} is gone"
        elif (never := never_started(run, now_ms)) is not None:
            action, reason = CLOSE, never
        elif old_enough:
            where = owner.describe() if owner else "an unknown process"
            action, reason = CLOSE, f"started by {where} more than {older_than_s / 3600:g} h ago"
        else:
            where = f"{owner.describe()} (another host)" if owner else "no owner recorded"
            action, reason = KEEP, f"cannot tell whether it is alive: {where}; use --older-than"
        verdicts.append(Verdict(info.run_id, info.run_name or "", info.experiment_id, action, reason))
    return verdicts


def never_started(run: Run, now_ms: int) -> str | None:
    """Why MLflow's project submitter demonstrably never started anything in ``run``, or None.

    A run ``mlflow run`` created (``mlflow.source.type=PROJECT``) that carries no mlcycle tag
    ``SUBMIT_GRACE_S`` after it started: with ``--backend kubernetes`` and no
    ``mlflow.docker.image.id``, the submitter stopped before it pushed an image (no Docker,
    no ``kubernetes`` package, a failed build or push: no Job exists); with no backend tag,
    the submitter died before it launched the entry point (MLflow tags ``local`` right after
    launching it). Never these: the run this process is attached to (``MLFLOW_RUN_ID``); a
    launched local entry point (whatever it is: it may be another project's long job); a
    Kubernetes run with an image (its Job may still be queued; a started pod tags the run
    with its owner at once); other backends (e.g. Databricks).
    """
    tags = run.data.tags
    if (
        tags.get(SOURCE_TYPE_TAG) != "PROJECT"
        or run.info.run_id == os.environ.get("MLFLOW_RUN_ID")
        or any(key.startswith("mlcycle.") for key in tags)
        or now_ms - (run.info.start_time or now_ms) < SUBMIT_GRACE_S * 1000
    ):
        return None
    after = f"no mlcycle command started in it within {SUBMIT_GRACE_S // 60} min"
    backend = tags.get(BACKEND_TAG)  # the local backend sets it once the entry point is launched
    if backend == "kubernetes" and IMAGE_TAG not in tags:
        return (f"`mlflow run --backend kubernetes` created it and stopped before it pushed an image, "
                f"so no Job was started ({after}); see that command's output, then run it again")
    if backend is None:
        return (f"`mlflow run` created it and stopped before the entry point ran ({after}: "
                f"e.g. no `kubernetes` package, a failed environment build); see its output")
    return None


def with_trees(client: MlflowClient, verdicts: list[Verdict]) -> list[Verdict]:
    """Each run to close takes the RUNNING runs of its pipeline tree with it (root and stage
    runs; trial runs are written whole and are RUNNING only while being written)."""
    out = {v.run_id: v for v in verdicts}
    for verdict in verdicts:
        if verdict.action != CLOSE:
            continue
        frontier = [root_of(client, verdict.run_id)]
        while frontier:
            run = frontier.pop()
            if run.info.status == "RUNNING" and run.info.run_id not in out:
                out[run.info.run_id] = replace(verdict, run_id=run.info.run_id, run_name=run.info.run_name or "")
            if run.data.tags.get(KIND_TAG) != KIND_TRIAL:
                frontier += children(client, run.info.experiment_id, run.info.run_id)
    return list(out.values())


def apply(client: MlflowClient, verdicts: list[Verdict], closed_by: str = BY_COMMAND) -> dict[str, str]:
    """Carry out the verdicts: end FAILED with the reason as a tag, or delete ghosts.

    Returns run id -> error for the runs that could not be changed (e.g. 403 under auth:
    only users with EDIT on the experiment may end its runs); the others are still done.
    """
    failed: dict[str, str] = {}
    for v in verdicts:
        try:
            if v.action == CLOSE:
                message = f"stale: {v.reason}; closed by {closed_by}"[:MAX_TAG_LENGTH]
                client.log_batch(v.run_id, tags=[RunTag(ERROR_TAG, message), RunTag(CLOSED_TAG, "true")])
                client.set_terminated(v.run_id, status=RunStatus.to_string(RunStatus.FAILED))
            elif v.action == DELETE:
                end_ghost(client, v.run_id, v.reason)
        except MlflowException as exc:
            failed[v.run_id] = exc.message.splitlines()[0] if exc.message else str(exc)
    return failed


def open_experiment(tracking_uri: str, experiment_name: str, artifact_location: str | None, opened_by: str) -> str:
    """The experiment to log into (``runs.prepare_experiment``), after closing the runs in it
    that a dead process of this host left RUNNING (``sweep``). ``opened_by`` names the
    command for the closed runs' reason tag (``pipeline``, ``predict``, ``monitor``)."""
    experiment_id = prepare_experiment(tracking_uri, experiment_name, artifact_location)
    sweep(connect(tracking_uri), [experiment_id], closed_by=f"the next mlcycle {opened_by} (pid {os.getpid()})")
    return experiment_id


def sweep(client: MlflowClient, experiment_ids: list[str], closed_by: str, now_ms: int | None = None) -> list[Verdict]:
    """Close (FAILED, with the reason) the RUNNING runs whose owner process on this host is
    gone, with the rest of their pipeline tree, the runs ``mlflow run`` created and never
    started anything in (``never_started``), and delete the ghosts among them. A live
    owner, another host's runs and other runs without owner tags are never touched here
    (only ``mlcycle runs close-stale --older-than`` closes those). Each change is logged; a store
    that refuses one (e.g. no EDIT permission) is a warning, never the command's failure.
    ``now_ms``: the clock ``judge`` uses (default: now)."""
    try:
        dead = [v for v in judge(client, running_runs(client, experiment_ids), now_ms=now_ms) if v.action != KEEP]
        verdicts = with_trees(client, dead)
        failed = apply(client, verdicts, closed_by)
    except MlflowException as exc:
        log.warning("could not check for runs left RUNNING by dead processes: %s", exc.message.splitlines()[0])
        return []
    for v in verdicts:
        done = f"could not {v.action} ({failed[v.run_id]})" if v.run_id in failed else \
            ("closed" if v.action == CLOSE else "deleted")
        log.warning("%s run %s (%s) left RUNNING: %s", done, v.run_id, v.run_name or "-", v.reason)
    return [v for v in verdicts if v.run_id not in failed]


def _get(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _twin(client: MlflowClient, experiment_id: str, token: str, run_id: str) -> str | None:
    """The run to keep when ``run_id`` is a ghost: another run created with the same token.

    The kept run is the one the client logged to: it ended, or it has child runs, or more
    data; two runs equal on all of that are interchangeable and the smallest id stays.
    """
    group = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TOKEN_TAG}` = '{token}'", run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10,
    )
    if len(group) < 2:
        return None

    def rank(run: Run):
        has_children = client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'", max_results=1
        )
        data = len(run.data.params) + len(run.data.metrics) + len(run.data.tags)
        return (run.info.status == "RUNNING", not has_children, -data, run.info.run_id)

    keeper = min(group, key=rank).info.run_id
    return keeper if keeper != run_id else None
