"""Real processes for the server tests: PostgreSQL databases, `mlflow server`, a faulty proxy.

Nothing here is a mock: databases are created on the PostgreSQL named by
MLCYCLE_TEST_POSTGRES_URI, servers are `mlflow server` subprocesses on 127.0.0.1, and the
proxy forwards real HTTP and loses real responses.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import TINY, stop_group

POSTGRES_ENV = "MLCYCLE_TEST_POSTGRES_URI"
ENABLE_HINT = (
    f"{POSTGRES_ENV} is not set: the tracking-server tests need PostgreSQL. Run them with "
    "`make test-postgres` (starts the project's cluster, scripts/server.sh), or set "
    f"{POSTGRES_ENV}=postgresql+psycopg2://USER:PASSWORD@127.0.0.1:PORT/DB for a user that may CREATE DATABASE"
)
MLFLOW = Path(sys.executable).parent / "mlflow"
MLCYCLE = Path(sys.executable).parent / "mlcycle"


def required() -> bool:
    """CI must run these tests: a missing PostgreSQL is a failure there, not a skip."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("CI", "MLCYCLE_REQUIRE_POSTGRES")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------- PostgreSQL
class Postgres:
    """Databases on the test PostgreSQL server (one fresh database per test or module)."""

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        self.url = make_url(url)

    def connect(self, database: str | None = None):
        import psycopg2

        conn = psycopg2.connect(
            host=self.url.host,
            port=self.url.port or 5432,
            user=self.url.username,
            password=self.url.password,
            dbname=database or self.url.database or "postgres",
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def uri(self, database: str) -> str:
        """SQLAlchemy URL of ``database``, with the driver MLflow needs and the password."""
        return self.url.set(drivername="postgresql+psycopg2", database=database).render_as_string(
            hide_password=False
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
                )
        finally:
            conn.close()
        return self.uri(name)

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()


# --------------------------------------------------------------------------- mlflow server
class MlflowServer:
    """`mlflow server` on 127.0.0.1 as the team set-up runs it: one worker, no job runner,
    artifacts served from a folder, schema already upgraded."""

    def __init__(
        self,
        backend_uri: str,
        folder: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        app_name: str | None = None,
        args: tuple[str, ...] = (),
    ):
        self.backend_uri = backend_uri
        self.folder = folder
        self.port = port or free_port()
        self.env = env or {}
        self.app_name = app_name
        self.args = tuple(args)  # more `mlflow server` options, e.g. ("--allowed-hosts", ...)
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env}
        for var in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_RUN_ID",
            "MLFLOW_EXPERIMENT_ID",
            "MLFLOW_EXPERIMENT_NAME",
        ):
            env.pop(var, None)
        cmd = [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        cmd += self.args
        self.starts += 1
        log = open(self.folder / f"server-{self.starts}.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        try:
            wait_for(self._healthy, timeout, f"mlflow server on {self.url}", interval=0.3)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mlflow server did not start; log:\n{self.log_tail()}") from None
        return self

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {self.process.returncode}; log:\n{self.log_tail()}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to the whole process group (server + uvicorn worker), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        stop_group(self.process)
        wait_for(lambda: not _port_open(self.port), 20, f"port {self.port} to close")

    def log_tail(self, lines: int = 40) -> str:
        path = self.folder / f"server-{self.starts}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- faulty proxy
class LosingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards everything to ``upstream`` and, for the
    requests ``lose`` picks, forwards the request, lets the server commit it, then closes
    the client's connection without an answer: the response is lost, so the client retries."""

    def __init__(self, upstream_port: int, lose: Callable[[str, str, bytes], bool]):
        self.upstream_port = upstream_port
        self.lose = lose
        self.requests: list[tuple[str, str, bytes]] = []
        self.lost: list[tuple[str, str, bytes]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self._body()
                proxy.requests.append((self.command, self.path, body))
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "transfer-encoding", "content-length")
                }
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                if proxy.lose(self.command, self.path, body):
                    proxy.lost.append((self.command, self.path, body))
                    self.close_connection = True  # committed upstream; the client never hears
                    return
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in (
                        "connection",
                        "transfer-encoding",
                        "content-length",
                        "keep-alive",
                        "date",
                        "server",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def lose_first_create_of(*run_names: str) -> Callable[[str, str, bytes], bool]:
    """A ``lose`` rule: the first ``runs/create`` response for each named run is lost."""
    pending = set(run_names)
    lock = threading.Lock()

    def rule(method: str, path: str, body: bytes) -> bool:
        if method != "POST" or not path.endswith("/runs/create"):
            return False
        name = json.loads(body or b"{}").get("run_name")
        with lock:
            if name in pending:
                pending.discard(name)
                return True
        return False

    return rule


# --------------------------------------------------------------------------- the CLI
def cli(
    args: list[str], env: dict[str, str], timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MLCYCLE), *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(MLCYCLE), *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


# --------------------------------------------------------------------------- reading runs back
def tiny_overrides(experiment: str, *extra: str) -> list[str]:
    return [
        *TINY,
        f"mlflow.experiment_name={experiment}",
        f"registry.model_name={experiment}",
        *extra,
    ]


def children(client, experiment_id: str, parent_run_id: str) -> list:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=5000,
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def roots(client, experiment_name: str) -> list:
    exp = client.get_experiment_by_name(experiment_name)
    assert exp is not None, f"experiment {experiment_name} was not created"
    return client.search_runs(
        [exp.experiment_id], filter_string="tags.`mlcycle.run_kind` = 'pipeline'", max_results=1000
    )


def all_runs(client, experiment_name: str, view=None) -> list:
    from mlflow.entities import ViewType

    exp = client.get_experiment_by_name(experiment_name)
    return client.search_runs(
        [exp.experiment_id], run_view_type=view or ViewType.ACTIVE_ONLY, max_results=5000
    )
