"""What basic auth costs each tracking request, and what the auth cache gives back.

Three real `mlflow server --workers 1` processes on one PostgreSQL, started together and
measured in alternation (so machine load hits all three alike):

* open:     no authentication;
* auth:     `--app-name basic-auth` with MLflow's default `auth_cache_ttl_seconds = 0`
            (every request checks the password: PBKDF2, slow on purpose);
* auth+cache: the same with `auth_cache_ttl_seconds = 60`, what scripts/server.sh writes.

Printed: median milliseconds per REST call (`log_param`) and per trial run as the pipeline
writes it (create_run + one log_batch + set_terminated), and the ratio to `open`.
Needs MLCYCLE_TEST_POSTGRES_URI (e.g. `make test-postgres` prints how, or scripts/server.sh):

    MLCYCLE_TEST_POSTGRES_URI=$(scripts/server.sh db-uri --with-password mlcycle_test) \\
        .venv/bin/python benchmarks/tracking_server.py                 # full: 5 rounds x 20 calls, ~5 min
    ... benchmarks/tracking_server.py --rounds 3 --calls 10            # reduced
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.server.harness import POSTGRES_ENV, MlflowServer, Postgres  # noqa: E402


def start_servers(pg: Postgres, folder: Path) -> tuple[dict[str, MlflowServer], list[str]]:
    """The three servers, each on a fresh database; returns them and the databases to drop."""
    databases: list[str] = []

    def database(label: str) -> str:
        name = f"mlcycle_bench_{label}_{uuid.uuid4().hex[:6]}"
        databases.append(name)
        return pg.create_database(name)

    servers: dict[str, MlflowServer] = {"open": MlflowServer(database("open"), folder / "open")}
    for label, ttl in (("auth", 0), ("auth+cache", 60)):
        sub = folder / label.replace("+", "_")
        sub.mkdir(parents=True)
        ini = sub / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {database(label.replace('+', '_') + '_users')}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {ttl}\n"
        )
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        servers[label] = MlflowServer(
            database(label.replace("+", "_")), sub, env=env, app_name="basic-auth"
        )
    for server in servers.values():
        server.start()
    return servers, databases


ADMIN = ("admin", secrets.token_urlsafe(18))


def measure(server: MlflowServer, label: str, calls: int) -> tuple[list[float], list[float]]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    if label != "open":
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    else:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name("bench") or client.get_experiment(
        client.create_experiment("bench")
    )
    run_id = client.create_run(experiment.experiment_id).info.run_id
    per_call, per_trial = [], []
    for i in range(calls):
        started = time.perf_counter()
        client.log_param(run_id, f"p{uuid.uuid4().hex[:8]}_{i}", i)
        per_call.append((time.perf_counter() - started) * 1000)
    for i in range(calls):
        started = time.perf_counter()
        now = int(time.time() * 1000)
        trial = client.create_run(
            experiment.experiment_id, tags={"mlflow.parentRunId": run_id}, run_name=f"t{i}"
        ).info.run_id
        client.log_batch(
            trial,
            params=[Param("C", "0.1"), Param("class_weight", "balanced")],
            metrics=[Metric("cv_roc_auc", 0.8, now, 0), Metric("fold_0_roc_auc", 0.79, now, 0)],
        )
        client.set_terminated(trial, end_time=now)
        per_trial.append((time.perf_counter() - started) * 1000)
    return per_call, per_trial


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument(
        "--calls", type=int, default=20, help="calls of each kind per server per round (default 20)"
    )
    args = parser.parse_args()
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        print(f"{POSTGRES_ENV} is not set (see the docstring)", file=sys.stderr)
        return 2
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    pg = Postgres(url)
    with tempfile.TemporaryDirectory() as tmp:
        servers, databases = start_servers(pg, Path(tmp))
        try:
            results = {label: ([], []) for label in servers}
            for label, server in servers.items():  # warm-up: connections, first password check
                measure(server, label, 3)
            for _ in range(args.rounds):
                for label, server in servers.items():
                    calls, trials = measure(server, label, args.calls)
                    results[label][0].extend(calls)
                    results[label][1].extend(trials)
        finally:
            for server in servers.values():
                server.stop()
            for name in databases:
                pg.drop_database(name)
    base_call = statistics.median(results["open"][0])
    base_trial = statistics.median(results["open"][1])
    print(f"{args.rounds} rounds x {args.calls} calls per server, alternating; medians")
    print(f"{'server':<12} {'log_param ms':>13} {'ratio':>6} {'trial run ms':>13} {'ratio':>6}")
    for label, (calls, trials) in results.items():
        call, trial = statistics.median(calls), statistics.median(trials)
        print(
            f"{label:<12} {call:>13.1f} {call / base_call:>6.1f} {trial:>13.1f} {trial / base_trial:>6.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
