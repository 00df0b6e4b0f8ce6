"""Fault 1: the tracking store is unreachable at start. The pipeline fails within seconds
(MLflow's client alone would retry for ~4 minutes) with one line naming the URI, masked,
and leaves nothing behind. No PostgreSQL needed: these run everywhere."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlcycle import pipeline
from mlcycle.errors import TrackingUnreachable
from tests.conftest import compose
from tests.server.harness import TINY, MlflowServer, cli, free_port

# MLflow's default: 7 retries with backoff factor 2, i.e. minutes. "Within seconds" means far
# below that; the bound is loose so that a loaded CI machine does not fail it.
FAST = 30.0


@pytest.fixture
def nowhere(remote) -> str:
    return remote(f"http://127.0.0.1:{free_port()}")


def test_pipeline_fails_fast_and_creates_nothing(nowhere, tmp_path):
    cfg = compose(TINY)
    started = time.monotonic()
    with pytest.raises(
        TrackingUnreachable,
        match=rf"tracking server {nowhere} is not reachable \(Connection refused\)",
    ):
        pipeline.run(cfg)
    assert time.monotonic() - started < FAST
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no artifacts, no data


def test_cli_says_one_line_with_the_uri_masked_and_exits_non_zero(cli_env, tmp_path):
    port = free_port()
    env = cli_env(f"http://bob:hunter2@127.0.0.1:{port}")
    started = time.monotonic()
    done = cli(["train", *TINY], env, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: tracking server http://bob:***@127.0.0.1:{port} is not reachable (Connection refused); "
        "start it (make server), or point MLFLOW_TRACKING_URI / mlflow.tracking_uri at a running one"
    ]
    assert "hunter2" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < FAST
    assert list(tmp_path.iterdir()) == []  # checked before Hydra's outputs/, any store or data


def test_database_uri_is_checked_too(remote):
    port = free_port()
    remote(f"postgresql+psycopg2://bob:hunter2@127.0.0.1:{port}/mlflow")
    with pytest.raises(TrackingUnreachable) as info:
        pipeline.run(compose(TINY))
    assert str(info.value).startswith(
        f"tracking store postgresql+psycopg2://bob:***@127.0.0.1:{port}/mlflow is not reachable"
    )


def test_a_server_that_accepts_but_never_answers_times_out_in_seconds(remote):
    with socket.socket() as listener:  # the kernel completes the handshake; nobody replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = remote(f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(TrackingUnreachable, match=rf"{url} is not reachable \(timed out\)"):
            pipeline.run(compose([*TINY, "mlflow.connect_timeout=1"]))
        assert time.monotonic() - started < FAST


def test_something_else_on_the_port_is_reported_as_not_mlflow(remote):
    class NotMlflow(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = remote(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(
            TrackingUnreachable,
            match=rf"{url} answered HTTP 404 on /health; is it an MLflow server",
        ):
            pipeline.run(compose(TINY))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def strict_hosts_server(tmp_path, template_store):
    """A real `mlflow server` (sqlite store) whose --allowed-hosts leaves out the address the
    client uses: /health answers, the API answers 403 "Invalid Host header"."""
    db = tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template_store, db)
    server = MlflowServer(f"sqlite:///{db}", tmp_path / "server", args=("--allowed-hosts", "mlflow.example.com")).start()
    yield server
    server.stop()


def test_a_host_header_refusal_says_what_the_server_said(strict_hosts_server, remote, cli_env, tmp_path):
    server = strict_hosts_server
    host = f"127.0.0.1:{server.port}"
    expected = (
        f"tracking server {server.url} refused the request: Invalid Host header - possible DNS rebinding attack "
        f"detected (HTTP 403); its --allowed-hosts must include {host}"
    )
    remote(server.url)
    with pytest.raises(TrackingUnreachable) as refused:
        pipeline.run(compose(TINY))
    assert str(refused.value) == expected
    assert "ask an admin" not in str(refused.value)

    done = cli(["train", *TINY], cli_env(server.url, MLFLOW_TRACKING_USERNAME="alice"), timeout=120)
    assert done.returncode == 3, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [f"error: {expected}"]
    assert not (tmp_path / "outputs").exists()
