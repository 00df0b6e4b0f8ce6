"""Links into the MLflow UI (tracking/ui.py): every page carries the view parameter, the
address is the server's own or `mlcycle ui`'s, and the command to start the UI is one a
shell outside the virtual environment can run."""

from __future__ import annotations

import pytest

from mlcycle.config.load import source_checkout
from mlcycle.pipeline import default_run_name
from mlcycle.tracking import ui

RUN = "0123456789abcdef0123456789abcdef"


def test_every_page_opens_in_the_model_training_view():
    assert ui.experiment_path("7") == "#/experiments/7?workflowType=machine_learning"
    assert ui.run_path("7", RUN) == f"#/experiments/7/runs/{RUN}?workflowType=machine_learning"
    assert ui.run_path("7", RUN, "report.html") == f"#/experiments/7/runs/{RUN}/artifacts/report.html?workflowType=machine_learning"
    assert ui.model_version_path("team/churn model", "3") == "#/models/team%2Fchurn%20model/versions/3?workflowType=machine_learning"
    assert ui.experiments_path() == "#/experiments?workflowType=machine_learning"


@pytest.mark.parametrize(
    ("tracking_uri", "address"),
    [
        ("sqlite:////data/mlflow.db", "http://127.0.0.1:5000"),  # a local store: what `mlcycle ui` serves
        ("postgresql+psycopg2://bob:secret@db:5432/mlflow", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),  # a tracking server is its own UI
        ("https://alice:s3cret@mlflow.example.com/team/", "https://mlflow.example.com/team"),  # no credentials
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("databricks", None),
    ],
)
def test_the_address_is_the_servers_own_or_the_local_ui(tracking_uri, address):
    assert ui.address(tracking_uri) == address


def test_a_run_link_is_address_plus_path():
    assert ui.url("http://10.0.0.5:5000", ui.run_path("1", RUN)) == (
        f"http://10.0.0.5:5000/#/experiments/1/runs/{RUN}?workflowType=machine_learning"
    )
    assert ui.url("sqlite:////x/mlflow.db", ui.experiment_path("1"), port=5055).startswith("http://127.0.0.1:5055/#/")
    assert ui.browse("databricks", ui.experiment_path("1")) is None


def test_the_command_that_serves_a_local_store(monkeypatch, tmp_path):
    checkout = source_checkout()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLCYCLE_ROOT", str(tmp_path))
    default = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.chdir(checkout)
    assert ui.serve_command(default) == "make ui"
    assert ui.browse(default, ui.experiment_path("1")) == "make ui, then http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning"
    assert ui.serve_command("sqlite:////other dir/mlflow.db") == "make ui STORE='sqlite:////other dir/mlflow.db'"
    assert ui.serve_command("postgresql://bob:secret@db/mlflow") == "make ui STORE='postgresql://bob:***@db/mlflow'"
    monkeypatch.chdir(tmp_path)
    assert ui.serve_command(default) == f"make -C {checkout} ui"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////other/mlflow.db")  # what `make ui` would open too
    assert ui.serve_command("sqlite:////other/mlflow.db") == f"make -C {checkout} ui"
    assert ui.serve_command("http://127.0.0.1:5000") is None  # nothing to start
    assert ui.browse("http://127.0.0.1:5000", ui.experiment_path("1")) == "http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning"


def test_root_runs_are_named_model_first_and_short():
    assert default_run_name("ecommerce", "hist_gradient_boosting") == "hgb-ecommerce"
    assert default_run_name("wine", "random_forest") == "rf-wine"
    assert default_run_name("ecommerce", "logistic_regression") == "lr-ecommerce"
    assert default_run_name("csv", "xgboost") == "xgboost-csv"
