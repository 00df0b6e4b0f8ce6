"""Fail fast when the tracking store cannot be reached, before any run or data work exists.

MLflow's HTTP client retries every request for minutes (7 retries, exponential backoff):
right for a server that restarts mid-run, wrong for a server that is not there at all. So
the pipeline asks once, with a short timeout and no retries, before it creates anything:

* ``http(s)://``: ``GET /health`` must answer 200, then one authenticated read
  (``experiments/search``) must not answer 401/403, with the credentials MLflow itself
  would send (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``); a
  403 is told apart by what the server said (a permission, or its Host-header check);
* a database URI (``postgresql+psycopg2://``, ``mysql://``, ...): a TCP connection to its
  host and port;
* local stores (``sqlite:``, ``file:``) need no reachability check.

Then a database store's schema (sqlite, PostgreSQL, ...) must be the one this MLflow uses
(``store_schema.refuse_mismatch``): MLflow would otherwise migrate an older store silently.
That check reads the revision without migrating, and MLflow's own revisions from its
migration scripts' text. No mlflow import: this runs before MLflow is loaded.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from mlcycle.core.masking import mask_uri
from mlcycle.errors import TrackingUnreachable
from mlcycle.tracking.store_schema import is_database, refuse_mismatch

DEFAULT_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
HINT = "start it (make server), or point MLFLOW_TRACKING_URI / mlflow.tracking_uri at a running one"


def resolve_tracking_uri(configured: str) -> str:
    """``MLFLOW_TRACKING_URI`` wins when set; otherwise the configured URI."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def check_tracking_store(uri: str, timeout: float = 5.0) -> None:
    """Raise ``TrackingUnreachable`` (one line naming the URI) unless the store answers, and
    ``StoreSchemaError`` unless a database store has this MLflow's schema (or none yet)."""
    check_reachable(uri, timeout)
    if is_database(uri):
        refuse_mismatch(uri, timeout)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise ``TrackingUnreachable`` (one line naming the URI) unless the store answers."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        _check_http(uri, timeout)
        return
    base = scheme.split("+", 1)[0]
    if base in DEFAULT_DB_PORTS:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port or DEFAULT_DB_PORTS[base]
        if host:  # a socket-only URI (host in the query string) is left to the driver
            _check_tcp(uri, host, port, timeout)


def _check_tcp(uri: str, host: str, port: int, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TrackingUnreachable(
            f"tracking store {mask_uri(uri)} is not reachable ({_reason(exc)}); {HINT}"
        ) from None


def _check_http(uri: str, timeout: float) -> None:
    import requests

    base = uri.rstrip("/")
    verify = _verify()
    try:
        health = requests.get(f"{base}/health", timeout=timeout, verify=verify)
    except requests.RequestException as exc:
        raise TrackingUnreachable(
            f"tracking server {mask_uri(uri)} is not reachable ({_reason(exc)}); {HINT}"
        ) from None
    if health.status_code != 200:
        raise TrackingUnreachable(
            f"tracking server {mask_uri(uri)} answered HTTP {health.status_code} on /health; "
            "is it an MLflow server, and is the URI right?"
        )
    try:
        probe = requests.get(
            f"{base}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=timeout,
            verify=verify,
            **_auth(),
        )
    except requests.RequestException as exc:
        raise TrackingUnreachable(
            f"tracking server {mask_uri(uri)} stopped answering ({_reason(exc)})"
        ) from None
    if probe.status_code == 401:
        raise TrackingUnreachable(
            f"tracking server {mask_uri(uri)} needs credentials (HTTP 401): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
        )
    if probe.status_code == 403:
        raise TrackingUnreachable(_refusal(uri, probe.text))


def _refusal(uri: str, body: str) -> str:
    """What a 403 meant: the auth plugin's "Permission denied" is about the user; anything
    else (the server's Host-header check, a proxy) is quoted as the server said it."""
    said = " ".join(body.split())[:300]
    if said.lower() == "permission denied" or "PERMISSION_DENIED" in said:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "?")
        return f"tracking server {mask_uri(uri)} refused user {user!r} (HTTP 403): ask an admin for permission"
    line = f"tracking server {mask_uri(uri)} refused the request: {said or 'no reason given'} (HTTP 403)"
    if "invalid host header" in said.lower():  # mlflow server --allowed-hosts (DNS rebinding guard)
        line += f"; its --allowed-hosts must include {urlsplit(uri).netloc.rpartition('@')[2]}"
    return line


def _auth() -> dict:
    """The credentials MLflow's client sends, from MLflow's own environment variables."""
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        return {"auth": (user, password)}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {}


def _verify() -> bool | str:
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


def _reason(exc: BaseException) -> str:
    """The innermost cause, short: 'Connection refused', 'timed out', ..."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc)
    for marker in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "Temporary failure in name resolution",
        "Connection reset",
    ):
        if marker.lower() in text.lower():
            return marker
    return type(exc).__name__ if not text else text.splitlines()[0][:200]
