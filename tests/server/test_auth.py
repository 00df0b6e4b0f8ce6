"""Fault 6: basic auth on (`mlflow server --app-name basic-auth`, users in PostgreSQL).

No credentials → 401; a user with only READ cannot create runs or move aliases → 403; the
pipeline with valid credentials works. The admin password comes from the environment and the
auth config is generated in a temp folder, as scripts/server.sh does.
"""

from __future__ import annotations

import secrets

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle import pipeline
from mlcycle.config.schema import STAGES
from mlcycle.errors import TrackingUnreachable
from tests.conftest import compose
from tests.server.harness import MlflowServer, children, roots, tiny_overrides

pytestmark = pytest.mark.postgres

EXPERIMENT = "auth-team"


@pytest.fixture(scope="module")
def auth_server(new_database, tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth-server")
    auth_db = new_database("auth_users", mlflow=False)
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {auth_db}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"  # as scripts/server.sh: PBKDF2 once per user per minute
    )
    ini.chmod(0o600)
    admin = ("admin", secrets.token_urlsafe(18))
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    server = MlflowServer(
        new_database("auth_tracking"), folder, env=env, app_name="basic-auth"
    ).start()
    server.admin = admin
    server.users = {}
    for name in ("alice", "bob"):  # alice runs pipelines, bob only reads (default_permission)
        password = secrets.token_urlsafe(18)
        answer = requests.post(
            f"{server.url}/api/2.0/mlflow/users/create",
            json={"username": name, "password": password},
            auth=admin,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        server.users[name] = (name, password)
    yield server
    server.stop()


def as_user(monkeypatch, remote, server, user: tuple[str, str] | None) -> MlflowClient:
    remote(server.url)
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    if user:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    return MlflowClient(server.url)


@pytest.fixture(scope="module")
def alice_pipeline(auth_server):
    """One pipeline run by alice (valid credentials), shared by the tests below."""
    mp = pytest.MonkeyPatch()
    try:
        import mlflow

        mp.setenv("MLFLOW_TRACKING_URI", auth_server.url)
        mp.setenv("MLFLOW_TRACKING_USERNAME", auth_server.users["alice"][0])
        mp.setenv("MLFLOW_TRACKING_PASSWORD", auth_server.users["alice"][1])
        mp.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mlflow.set_tracking_uri(auth_server.url)
        result = pipeline.run(compose(tiny_overrides(EXPERIMENT, "evaluate.plots=false")))
        mlflow.set_tracking_uri(None)
        return result
    finally:
        mp.undo()


def test_pipeline_with_valid_credentials_works(auth_server, alice_pipeline, monkeypatch, remote):
    client = as_user(monkeypatch, remote, auth_server, auth_server.users["alice"])
    [root] = roots(client, EXPERIMENT)
    assert root.info.run_id == alice_pipeline.run_id and root.info.status == "FINISHED"
    assert root.data.tags["mlflow.user"]
    assert [
        r.info.run_name for r in children(client, root.info.experiment_id, root.info.run_id)
    ] == list(STAGES)
    assert str(client.get_model_version_by_alias(EXPERIMENT, "champion").version) == "1"


def test_no_credentials_get_401_and_the_pipeline_says_so(auth_server, monkeypatch, remote):
    url = auth_server.url
    assert (
        requests.get(
            f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30
        ).status_code
        == 401
    )
    assert (
        requests.post(
            f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=30
        ).status_code
        == 401
    )
    assert (
        requests.get(
            f"{url}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=("alice", "wrong-password-123"),
            timeout=30,
        ).status_code
        == 401
    )
    as_user(monkeypatch, remote, auth_server, None)
    with pytest.raises(
        TrackingUnreachable, match=r"needs credentials \(HTTP 401\): set MLFLOW_TRACKING_USERNAME"
    ):
        pipeline.run(compose(tiny_overrides(EXPERIMENT)))


def test_read_user_cannot_create_runs_or_move_aliases(
    auth_server, alice_pipeline, monkeypatch, remote
):
    bob = as_user(monkeypatch, remote, auth_server, auth_server.users["bob"])
    experiment_id = bob.get_experiment_by_name(EXPERIMENT).experiment_id  # reading is allowed
    assert bob.get_run(alice_pipeline.run_id).info.status == "FINISHED"
    assert str(bob.get_model_version_by_alias(EXPERIMENT, "champion").version) == "1"

    with pytest.raises(MlflowException) as denied:
        bob.create_run(experiment_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException) as denied:
        bob.set_registered_model_alias(EXPERIMENT, "champion", "1")
    assert denied.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException) as denied:
        bob.delete_registered_model_alias(EXPERIMENT, "champion")
    assert denied.value.error_code == "PERMISSION_DENIED"

    # the HTTP status under the exception is 403, as the issue asks
    creds = auth_server.users["bob"]
    create = requests.post(
        f"{auth_server.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id},
        auth=creds,
        timeout=30,
    )
    assert create.status_code == 403
    alias = requests.post(
        f"{auth_server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": EXPERIMENT, "alias": "champion", "version": "1"},
        auth=creds,
        timeout=30,
    )
    assert alias.status_code == 403
    # nothing changed
    alice = as_user(monkeypatch, remote, auth_server, auth_server.users["alice"])
    assert len(roots(alice, EXPERIMENT)) == 1
    assert str(alice.get_model_version_by_alias(EXPERIMENT, "champion").version) == "1"


def test_read_user_pipeline_fails_with_permission_denied_and_leaves_nothing_running(
    auth_server, alice_pipeline, monkeypatch, remote
):
    as_user(monkeypatch, remote, auth_server, auth_server.users["bob"])
    with pytest.raises(MlflowException, match="Permission denied"):
        pipeline.run(compose(tiny_overrides(EXPERIMENT)))
    alice = as_user(monkeypatch, remote, auth_server, auth_server.users["alice"])
    assert len(roots(alice, EXPERIMENT)) == 1


def test_close_stale_needs_edit_permission_and_says_which_runs_it_could_not_close(
    auth_server, alice_pipeline, monkeypatch, remote, capsys
):
    import subprocess
    import sys
    from dataclasses import replace

    from mlcycle.commands.runs import main as runs_main
    from mlcycle.core import liveness

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process that existed and is gone
    dead = replace(liveness.current(), pid=child.pid, start="")
    alice = as_user(monkeypatch, remote, auth_server, auth_server.users["alice"])
    experiment_id = alice.get_experiment_by_name(EXPERIMENT).experiment_id
    orphan = alice.create_run(experiment_id, run_name="orphan", tags=dead.tags()).info.run_id

    as_user(monkeypatch, remote, auth_server, auth_server.users["bob"])
    assert runs_main(["close-stale", "--experiment", EXPERIMENT]) == 1
    out = capsys.readouterr().out
    assert f"FAILED to close {orphan}" in out and "1 could not be changed" in out
    alice = as_user(monkeypatch, remote, auth_server, auth_server.users["alice"])
    assert alice.get_run(orphan).info.status == "RUNNING"

    assert runs_main(["close-stale", "--experiment", EXPERIMENT]) == 0
    assert "1 closed" in capsys.readouterr().out
    assert alice.get_run(orphan).info.status == "FAILED"
