"""``mlcycle ui``: the MLflow UI on the project's store, opened on the runs table.

Prints the experiment's page (with the parameter that makes MLflow 3 show the runs table,
not its GenAI overview), then runs ``mlflow ui`` for the store on 127.0.0.1 (``make ui``
runs this). A tracking server serves its own UI: then the page is printed, nothing started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common


@command
def main(argv: list[str]) -> int:
    from mlcycle.tracking import ui

    parser = _common.parser("ui", __doc__)
    parser.add_argument("--tracking-uri", default=None,
                        help="store to show (default: MLFLOW_TRACKING_URI, else the project's sqlite store)")
    parser.add_argument("--port", type=int, default=ui.PORT, help=f"port on {ui.HOST} (default {ui.PORT})")
    args = _common.parse(parser, argv)
    from mlcycle.config.load import compose
    from mlcycle.core.masking import mask_uri
    from mlcycle.errors import MlcycleError
    from mlcycle.tracking.remote import resolve_tracking_uri
    from mlcycle.tracking.runs import is_server_uri

    cfg = compose(args.overrides)
    uri = args.tracking_uri or resolve_tracking_uri(cfg.mlflow.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise MlcycleError(f"no tracking store at {uri.removeprefix('sqlite:///')} yet: run `make run` "
                           "(mlcycle train) first, or pass --tracking-uri")
    client, _ = _common.connect(cfg, uri)
    name = cfg.mlflow.experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        print(f"no experiment {name!r} in {mask_uri(uri)} yet; all experiments: "
              f"{ui.url(uri, ui.experiments_path(), args.port)}", flush=True)
    else:
        print(f"experiment {name!r}: {ui.url(uri, ui.experiment_path(experiment.experiment_id), args.port)}", flush=True)
    if is_server_uri(uri):
        print("(the tracking server serves the UI itself; nothing to start)")
        return 0
    # one reader in a browser: one worker, and no job runner (GenAI judges; it starts a dozen processes)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    mlflow = str(Path(sys.executable).parent / "mlflow")
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", ui.HOST, "--port", str(args.port),
                      "--workers", "1"])
    return 0  # not reached: the process is now `mlflow ui`
