"""What a 403 from the tracking server is reported as (tracking/remote.py): the bodies are the
ones MLflow's server sends, taken from MLflow itself. The Host-header refusal of a real
`mlflow server` is in tests/server/test_unreachable.py."""

from __future__ import annotations

from flask import Flask
from mlflow.server.auth import make_forbidden_response
from mlflow.server.security_utils import INVALID_HOST_MSG

from mlcycle.tracking.remote import _refusal


def test_a_permission_403_is_about_the_user(monkeypatch):
    with Flask("auth").app_context():
        body = make_forbidden_response().get_data(as_text=True)  # the basic-auth plugin's answer
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    assert _refusal("http://bob:pw@mlflow.internal:5000", body) == (
        "tracking server http://bob:***@mlflow.internal:5000 refused user 'alice' (HTTP 403): ask an admin for permission"
    )


def test_any_other_403_quotes_the_server():
    assert _refusal("http://bob:pw@mlflow.internal:5000", INVALID_HOST_MSG) == (
        f"tracking server http://bob:***@mlflow.internal:5000 refused the request: {INVALID_HOST_MSG} (HTTP 403); "
        "its --allowed-hosts must include mlflow.internal:5000"
    )
    assert _refusal("https://mlflow.internal", "<html>\n<h1>403 Forbidden</h1>\n</html>") == (
        "tracking server https://mlflow.internal refused the request: <html> <h1>403 Forbidden</h1> </html> (HTTP 403)"
    )
    assert _refusal("https://mlflow.internal", "") == (
        "tracking server https://mlflow.internal refused the request: no reason given (HTTP 403)"
    )
