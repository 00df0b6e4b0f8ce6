"""Links into the MLflow UI: the one place that builds them, for the console, run
descriptions, reports and ``mlcycle ui``.

MLflow 3.17's UI opens an experiment in its GenAI view (trace charts, no runs table) unless
told otherwise: the view is a per-browser preference (local storage ``mlflow.workflowType``,
GenAI when unset) that the URL's ``workflowType`` parameter overrides, on experiment, run and
registry pages alike. So every link carries ``?workflowType=machine_learning``
(tests/integration/test_ui.py opens one in headless Chromium with an empty profile).

A ``*_path`` is the part after the UI's address (``#/...``): in a run's description it is a
link that works whatever address the UI is served at. ``url`` puts the address in front: a
tracking server's own address (it serves the UI), or for a local store the address
``mlcycle ui`` (``make ui``) serves it at.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from mlcycle.config.load import project_root, source_checkout
from mlcycle.core.masking import mask_uri

HOST, PORT = "127.0.0.1", 5000  # where `mlcycle ui` (and `make ui`) serves a local store
VIEW = "workflowType=machine_learning"  # the runs table, not the GenAI overview


def experiments_path() -> str:
    return f"#/experiments?{VIEW}"


def experiment_path(experiment_id: str) -> str:
    return f"#/experiments/{experiment_id}?{VIEW}"


def run_path(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """A run's page; with ``artifact``, its Artifacts tab opened on that file."""
    tail = f"/artifacts/{artifact}" if artifact else ""
    return f"#/experiments/{experiment_id}/runs/{run_id}{tail}?{VIEW}"


def model_version_path(name: str, version: str) -> str:
    return f"#/models/{quote(name, safe='')}/versions/{version}?{VIEW}"


def address(tracking_uri: str, port: int = PORT) -> str | None:
    """The UI's address for a store: a tracking server's own (without credentials), the
    local ``mlcycle ui`` address for a store this process opens itself, None for Databricks."""
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    if tracking_uri.startswith("databricks"):
        return None
    return f"http://{HOST}:{port}"


def url(tracking_uri: str, path: str, port: int = PORT) -> str | None:
    base = address(tracking_uri, port)
    return f"{base}/{path}" if base else None


def default_store() -> str:
    """The store ``mlcycle ui`` opens without options: MLFLOW_TRACKING_URI, else the project's
    sqlite file (conf/mlflow/local.yaml)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root()}/mlflow.db"


def serve_command(tracking_uri: str) -> str | None:
    """The shell command that serves the UI for a local store (None for a tracking server,
    which is its own UI): ``make ui`` in the checkout, with ``STORE=`` for another store."""
    if address(tracking_uri) is None or tracking_uri.startswith(("http://", "https://")):
        return None
    other = tracking_uri != default_store()
    store = shlex.quote(mask_uri(tracking_uri))
    checkout = source_checkout()
    if checkout is None:  # an installed package: no Makefile
        return f"{Path(sys.executable).parent / 'mlcycle'} ui" + (f" --tracking-uri {store}" if other else "")
    make = "make ui" if Path.cwd().resolve() == checkout else f"make -C {shlex.quote(str(checkout))} ui"
    return make + (f" STORE={store}" if other else "")


def browse(tracking_uri: str, path: str) -> str | None:
    """One line: how to start the UI (for a local store) and the page to open."""
    link = url(tracking_uri, path)
    if link is None:
        return None
    command = serve_command(tracking_uri)
    return f"{command}, then {link}" if command else link
