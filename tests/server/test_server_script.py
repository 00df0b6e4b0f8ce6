"""`scripts/server.sh` (what `make server` / `make server-stop` run), end to end: its own
PostgreSQL cluster in a temp folder, the schema upgraded, `mlflow server` with basic auth and
served artifacts, a pipeline logged to it over HTTP, a backup, and a clean stop. No secret
may appear on any command line or in the generated files that are not meant to hold it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from mlcycle.config.schema import STAGES
from tests.server.harness import ENABLE_HINT, TINY, cli, free_port, required, roots

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "server.sh"


def postgres_installed() -> bool:
    return (
        bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))
        or shutil.which("initdb") is not None
    )


@pytest.fixture
def script_env(tmp_path):
    if not postgres_installed():
        if required():
            pytest.fail(
                "PostgreSQL binaries (initdb) are missing; .ci/run installs Debian's postgresql package"
            )
        pytest.skip(f"PostgreSQL is not installed. {ENABLE_HINT}")
    state = tmp_path / "state"
    pgdata = (
        Path(os.environ.get("MLCYCLE_TEST_PGDATA_PARENT", "/var/tmp"))
        / f"mlcycle-test-{tmp_path.name}-{os.getpid()}"
    )
    env = {
        **os.environ,
        "MLCYCLE_PGDATA": str(
            pgdata
        ),  # outside /tmp/pytest-*: the postgres user must reach it when run as root
        "MLCYCLE_SERVER_DIR": str(state),
        "MLCYCLE_PG_PORT": str(free_port()),
        "MLCYCLE_SERVER_PORT": str(free_port()),
        "MLCYCLE_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
        "MLCYCLE_AUTH": "1",
        "MLCYCLE_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18),
    }
    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_AUTH_CONFIG_PATH",
    ):
        env.pop(var, None)
    yield env
    subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(pgdata, ignore_errors=True)


def script(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def command_lines() -> str:
    lines = []
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # the process may be gone
            lines.append(proc.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(lines)


def test_make_server_starts_postgres_and_an_authenticated_mlflow_server_and_stops_them(
    script_env, tmp_path
):
    env = script_env
    url = f"http://127.0.0.1:{env['MLCYCLE_SERVER_PORT']}"
    admin = ("admin", env["MLCYCLE_AUTH_ADMIN_PASSWORD"])

    started = script(env, "start")
    assert started.returncode == 0, started.stderr[-3000:]
    assert f"mlflow server on {url}" in started.stderr and "auth on" in started.stderr
    assert "running" in script(env, "status").stdout

    # secrets: only in the 600 files meant for them, never on a command line
    pgpass = Path(env["MLCYCLE_PGDATA"]) / "pgpass"
    db_password = pgpass.read_text().splitlines()[0].split(":", 4)[4]
    state = Path(env["MLCYCLE_SERVER_DIR"])
    for secret_file in (pgpass, state / "basic_auth.ini", state / "flask_secret_key"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
    ini = (state / "basic_auth.ini").read_text()
    assert db_password not in ini and admin[1] not in ini
    processes = command_lines()
    assert f"--port {env['MLCYCLE_SERVER_PORT']}" in processes
    assert db_password not in processes and admin[1] not in processes
    assert (
        "--allowed-hosts" in processes
        and "--cors-allowed-origins" in processes
        and "--app-name basic-auth" in processes
    )

    # auth is on; the admin (a real pipeline through the `mlflow=server` config group) gets in
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    assert (
        requests.get(
            f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10
        ).status_code
        == 401
    )
    pipeline_env = {
        **env,
        "MLCYCLE_ROOT": str(tmp_path),
        "MLFLOW_TRACKING_USERNAME": admin[0],
        "MLFLOW_TRACKING_PASSWORD": admin[1],
    }
    done = cli(
        ["train", *TINY, "mlflow=server", f"mlflow.tracking_uri={url}", "evaluate.plots=false"],
        pipeline_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = admin
    try:
        client = MlflowClient(url)
        [root] = roots(client, "mlcycle")
        assert root.info.status == "FINISHED"
        assert len(
            client.search_runs(
                [root.info.experiment_id], f"tags.`mlflow.parentRunId` = '{root.info.run_id}'"
            )
        ) == len(STAGES)
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    # artifacts are served by the server and land in its destination folder, not the client's
    assert list((tmp_path / "artifacts").rglob("config.yaml"))
    assert list((tmp_path / "artifacts").rglob("MLmodel"))
    assert not (tmp_path / "mlartifacts").exists()

    backup = script(env, "backup", str(tmp_path / "backups"))
    assert backup.returncode == 0, backup.stderr
    dumps = sorted(p.name.split("-")[0] for p in (tmp_path / "backups").iterdir())
    assert dumps == ["mlflow", "mlflow_auth"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "backups").iterdir())

    refused = script(env, "upgrade", str(tmp_path / "pre-upgrade"))
    assert refused.returncode != 0 and "stop it first (make server-stop)" in refused.stderr

    stopped = script(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert script(env, "status").stdout.splitlines() == [
        "postgresql: stopped",
        "mlflow server: stopped",
    ]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)

    # `upgrade` on a schema that is already current: the auth database is dumped, the
    # tracking one left as it is (tests/server/test_store_upgrade.py: the real upgrades)
    upgraded = script(env, "upgrade", str(tmp_path / "pre-upgrade"))
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert "nothing to upgrade, no backup taken" in upgraded.stderr
    assert [p.name.split("-")[0] for p in (tmp_path / "pre-upgrade").iterdir()] == ["mlflow_auth"]
    with tracking_db(env, db_password) as cur:  # a schema this MLflow does not know (a newer one's)
        cur.execute("SELECT version_num FROM alembic_version")
        head = cur.fetchone()[0]
        cur.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    unknown = script(env, "start")
    assert unknown.returncode == 4, unknown.stderr[-3000:]
    assert "has schema ffffffffffff, which MLflow" in unknown.stderr
    assert "mlflow server: stopped" in script(env, "status").stdout
    with tracking_db(env, db_password) as cur:
        cur.execute("UPDATE alembic_version SET version_num = %s", (head,))
    assert script(env, "stop").returncode == 0


def test_start_refuses_a_database_an_older_mlflow_wrote_and_upgrade_backs_up_migrates_and_counts(
    script_env, old_mlflow, tmp_path
):
    """`make server` on a database the previous MLflow wrote (its own venv): refused before
    mlflow server opens it (it would migrate it silently); `scripts/server.sh upgrade` dumps
    it, migrates it and compares row counts (the same `mlcycle db upgrade`); then the server
    serves the old history."""
    from tests.old_mlflow import write_store

    env = {**script_env, "MLCYCLE_AUTH": "0"}
    assert script(env, "db-start").returncode == 0
    uri = script(env, "db-uri", "--with-password").stdout.strip()
    summary = write_store(old_mlflow, uri, tmp_path / "old")
    db_password = uri.split("@", 1)[0].rsplit(":", 1)[1]
    with tracking_db(env, db_password) as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        [old_revision] = cur.fetchone()

    refused = script(env, "start")
    assert refused.returncode == 4, refused.stderr[-3000:]
    assert f"was written by an older MLflow (schema {old_revision}" in refused.stderr
    assert "run 'scripts/server.sh upgrade' on it (it backs up first)" in refused.stderr
    assert "mlflow server: stopped" in script(env, "status").stdout
    with tracking_db(env, db_password) as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone()[0] == old_revision

    upgraded = script(env, "upgrade", str(tmp_path / "backups"))
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    [dump] = (tmp_path / "backups").iterdir()
    assert dump.name.startswith("mlflow-") and f"-schema-{old_revision}-to-mlflow-" in dump.name
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert "counts equal" in upgraded.stderr and "start the server with: make server" in upgraded.stderr

    started = script(env, "start")
    assert started.returncode == 0, started.stderr[-3000:]
    client = MlflowClient(f"http://127.0.0.1:{env['MLCYCLE_SERVER_PORT']}")
    ids = [client.get_experiment_by_name(n).experiment_id for n in summary["experiments"]]
    assert sorted(r.info.run_id for r in client.search_runs(ids, max_results=1000)) == summary["run_ids"]
    assert int(client.get_model_version_by_alias("old-model", "champion").version) == int(summary["champion"])
    assert script(env, "stop").returncode == 0


@contextlib.contextmanager
def tracking_db(env, password):
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=int(env["MLCYCLE_PG_PORT"]),
        user="mlcycle",
        password=password,
        dbname="mlflow",
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()
