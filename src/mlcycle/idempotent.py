"""Create runs exactly once, although MLflow's HTTP client retries ``runs/create``.

MLflow's client retries POSTs too: when a ``runs/create`` committed on the server but its
response was lost (connection reset, timeout, server restart), the retry creates a second
run. The first one is a ghost: RUNNING forever, no params, an extra child in the tree.

Every run mlcycle creates carries a fresh random token tag. After creating (or, for trial
runs, once per batch) mlcycle searches for the token and deletes every run holding it except
the one the client got back, the run it logs to. A ghost that commits even later (a request
stuck on the server beyond the client's timeout) keeps its token and RUNNING status;
``mlcycle runs close-stale`` deletes it then.

Local stores (sqlite, files) make no HTTP requests, so nothing is searched there.
"""

from __future__ import annotations

import logging
import uuid

from mlflow import MlflowClient
from mlflow.entities import Run, RunTag

log = logging.getLogger(__name__)

TOKEN_TAG = "mlcycle.create_token"
GHOST_TAG = "mlcycle.ghost"


def new_token() -> str:
    return uuid.uuid4().hex


def is_remote(client: MlflowClient) -> bool:
    return is_server_uri(client.tracking_uri)


def is_server_uri(uri: str) -> bool:
    """A tracking server (HTTP), as opposed to a store this process opens itself."""
    return str(uri).startswith(("http://", "https://"))


def create_run_once(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    start_time: int | None = None,
) -> Run:
    """``client.create_run`` that leaves exactly one run behind, retries or not."""
    token = new_token()
    run = client.create_run(
        experiment_id,
        start_time=start_time,
        tags={**(tags or {}), TOKEN_TAG: token},
        run_name=run_name,
    )
    if is_remote(client):
        remove_ghosts(client, experiment_id, {token: run.info.run_id})
    return run


def remove_ghosts(
    client: MlflowClient, experiment_id: str, kept: dict[str, str], parent_run_id: str | None = None
) -> list[str]:
    """Delete runs holding one of ``kept``'s tokens but not its run id; return their ids.

    With ``parent_run_id``, one search over that run's children covers any number of
    tokens (trial runs); without, one search per token.
    """
    if not kept:
        return []
    if parent_run_id is not None:
        filters = [f"tags.`mlflow.parentRunId` = '{parent_run_id}'"]
    else:
        filters = [f"tags.`{TOKEN_TAG}` = '{token}'" for token in kept]
    ghosts = []
    for filter_string in filters:
        for run in _search_all(client, experiment_id, filter_string):
            token = run.data.tags.get(TOKEN_TAG)
            if token in kept and run.info.run_id != kept[token]:
                ghosts.append(run.info.run_id)
    for run_id in ghosts:
        log.warning("deleting ghost run %s (a duplicate created by a retried request)", run_id)
        end_ghost(client, run_id, "duplicate created by a retried request")
    return ghosts


def end_ghost(client: MlflowClient, run_id: str, reason: str) -> None:
    """End a ghost FAILED with the reason, then delete it (restorable, never RUNNING)."""
    client.log_batch(run_id, tags=[RunTag(GHOST_TAG, reason)])
    client.set_terminated(run_id, status="FAILED")
    client.delete_run(run_id)


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
