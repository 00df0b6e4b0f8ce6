"""Close runs left RUNNING by a process that no longer exists (SIGKILL, OOM, power loss).

A run's owner is recorded as tags when it starts (``liveness``); trial runs inherit their
parent's owner. For each RUNNING run:

* owner alive on this host → left alone;
* owner gone (no such pid, or the pid now belongs to another process) → ended FAILED with
  ``mlcycle.error`` saying why and ``mlcycle.closed_stale=true``;
* a duplicate left by a retried ``runs/create`` (another run holds its create token) →
  deleted (``idempotent``);
* owner on another host, or no owner tags (runs made outside mlcycle): liveness cannot be
  proved, so only closed with ``older_than`` and only when started before that cut-off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus, RunTag, ViewType

from mlcycle import liveness
from mlcycle.idempotent import TOKEN_TAG, end_ghost
from mlcycle.tracking import ERROR_TAG, PARENT_TAG

CLOSED_TAG = "mlcycle.closed_stale"
CLOSE, DELETE, KEEP = "close", "delete", "keep"


@dataclass(frozen=True)
class Verdict:
    run_id: str
    run_name: str
    experiment_id: str
    action: str  # close | delete | keep
    reason: str


def running_runs(client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    runs: list[Run] = []
    for i in range(0, len(experiment_ids), 100):
        token = None
        while True:
            page = client.search_runs(
                experiment_ids[i : i + 100],
                filter_string="attributes.status = 'RUNNING'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
    return runs


def judge(
    client: MlflowClient,
    runs: list[Run],
    older_than_s: float | None = None,
    now_ms: int | None = None,
) -> list[Verdict]:
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
        old_enough = (
            older_than_s is not None
            and (now_ms - (info.start_time or now_ms)) >= older_than_s * 1000
        )
        token = run.data.tags.get(TOKEN_TAG)
        twin = None  # only runs that may be ended are searched for a twin
        if token and (alive is False or old_enough):
            twin = _twin(client, info.experiment_id, token, info.run_id)
        if alive is True:
            action, reason = KEEP, f"{owner.describe()} is running"
        elif twin and (alive is False or old_enough):
            action, reason = DELETE, f"duplicate of run {twin} (created by a retried request)"
        elif alive is False:
            action, reason = CLOSE, f"{owner.describe()} is gone"
        elif old_enough:
            where = owner.describe() if owner else "an unknown process"
            action, reason = CLOSE, f"started by {where} more than {older_than_s / 3600:g} h ago"
        else:
            where = f"{owner.describe()} (another host)" if owner else "no owner recorded"
            action, reason = KEEP, f"cannot tell whether it is alive: {where}; use --older-than"
        verdicts.append(
            Verdict(info.run_id, info.run_name or "", info.experiment_id, action, reason)
        )
    return verdicts


def apply(client: MlflowClient, verdicts: list[Verdict]) -> dict[str, str]:
    """Carry out the verdicts: end FAILED with the reason as a tag, or delete ghosts.

    Returns run id -> error for the runs that could not be changed (e.g. 403 under auth:
    only users with EDIT on the experiment may end its runs); the others are still done.
    """
    from mlflow.exceptions import MlflowException

    failed: dict[str, str] = {}
    for v in verdicts:
        try:
            if v.action == CLOSE:
                message = f"stale: {v.reason}; closed by `mlcycle runs close-stale`"
                client.log_batch(
                    v.run_id, tags=[RunTag(ERROR_TAG, message), RunTag(CLOSED_TAG, "true")]
                )
                client.set_terminated(v.run_id, status=RunStatus.to_string(RunStatus.FAILED))
            elif v.action == DELETE:
                end_ghost(client, v.run_id, v.reason)
        except MlflowException as exc:
            failed[v.run_id] = exc.message.splitlines()[0] if exc.message else str(exc)
    return failed


def _get(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except Exception:
        return None


def _twin(client: MlflowClient, experiment_id: str, token: str, run_id: str) -> str | None:
    """The run to keep when ``run_id`` is a ghost: another run created with the same token.

    The kept run is the one the client logged to: it ended, or it has child runs, or more
    data; two runs equal on all of that are interchangeable and the smallest id stays.
    """
    group = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TOKEN_TAG}` = '{token}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10,
    )
    if len(group) < 2:
        return None

    def rank(run: Run):
        children = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'",
            max_results=1,
        )
        data = len(run.data.params) + len(run.data.metrics) + len(run.data.tags)
        return (run.info.status == "RUNNING", not children, -data, run.info.run_id)

    keeper = min(group, key=rank).info.run_id
    return keeper if keeper != run_id else None
