"""Apache Airflow DAG: monitor the champion every day, retrain when the verdict calls for it.

    monitor ──▶ decide ──▶ retrain       (verdict at or above params.retrain_on)
                      └──▶ no_retrain    (otherwise)

Each task runs one of mlcycle's own commands, so this file imports nothing from mlcycle and
Airflow can live in an environment of its own (Airflow is not a dependency of mlcycle):

* ``monitor``: ``mlcycle monitor <batch> monitor.retrain_on=never``. Exit codes 0 / 10 / 11
  (ok / drift / decay) succeed, anything else fails the task. Its XCom is the JSON that
  ``monitor.result_file`` writes: run id, verdict, exit code.
* ``decide``: branches on that exit code against ``params.retrain_on``.
* ``retrain``: ``mlcycle retrain <monitoring run id>``: reference data + the labelled batch,
  as a new root run tagged with the monitoring run; the registry decides on promotion.

Settings, read when the DAG file is parsed (environment of the scheduler/worker):

* ``MLCYCLE_BIN``: the ``mlcycle`` executable (default: ``mlcycle`` on PATH);
* ``MLCYCLE_BATCH_DIR``: where the day's batch lands, ``<dir>/<YYYY-MM-DD>.csv``;
* ``MLFLOW_TRACKING_URI`` / ``MLCYCLE_ROOT``: the tracking store, passed through to the tasks.

Per run (``airflow dags trigger -c '{...}'`` or ``airflow dags test -c '{...}'``):
``batch_overrides`` replaces the default batch (e.g. ``"batch.drift=2 batch.seed=7"`` for the
generator), ``monitor_overrides`` adds to it, ``retrain_on`` is decay | drift | never.
"""

from __future__ import annotations

import json
import os

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator

MLCYCLE = os.environ.get("MLCYCLE_BIN", "mlcycle")
BATCH_DIR = os.environ.get("MLCYCLE_BATCH_DIR", "data/batches")
EXIT_CODES = {"ok": 0, "drift": 10, "decay": 11}  # mlcycle.monitoring.monitor.EXIT_CODES

# The table goes to the task log; the last stdout line (the JSON result) becomes the XCom.
MONITOR_COMMAND = f"""
set -u
result="$(mktemp)"
batch="{{{{ params.batch_overrides }}}}"
if [ -z "$batch" ]; then batch="batch.path={BATCH_DIR}/{{{{ ds }}}}.csv"; fi
rc=0
"{MLCYCLE}" monitor $batch {{{{ params.monitor_overrides }}}} monitor.retrain_on=never \\
    monitor.result_file="$result" >&2 || rc=$?
case "$rc" in
  0|10|11) cat "$result"; rm -f "$result" ;;
  *) echo "mlcycle monitor failed with exit code $rc" >&2; exit "$rc" ;;
esac
"""

RETRAIN_COMMAND = (
    f'"{MLCYCLE}" retrain "{{{{ ti.xcom_pull(task_ids="decide", key="monitoring_run_id") }}}}" '
    "{{ params.retrain_overrides }}"
)


with DAG(
    dag_id="mlcycle_monitor",
    description="Daily drift/decay monitoring of the mlcycle champion; retrain on the verdict",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlcycle", "monitoring"],
    params={
        "batch_overrides": Param("", type="string", description="replaces batch.path=<MLCYCLE_BATCH_DIR>/<ds>.csv"),
        "monitor_overrides": Param("", type="string", description="extra `mlcycle monitor` overrides"),
        "retrain_on": Param("decay", enum=["decay", "drift", "never"]),
        "retrain_overrides": Param("", type="string", description="extra `mlcycle retrain` overrides"),
    },
) as dag:
    monitor = BashOperator(task_id="monitor", bash_command=MONITOR_COMMAND, do_xcom_push=True)

    @task.branch(task_id="decide")
    def decide(ti=None, params=None) -> str:
        """Retrain when the verdict's exit code is at or above the one of params.retrain_on."""
        result = json.loads(ti.xcom_pull(task_ids="monitor"))
        ti.xcom_push(key="monitoring_run_id", value=result["run_id"])
        threshold = params["retrain_on"]
        if threshold != "never" and result["exit_code"] >= EXIT_CODES[threshold]:
            return "retrain"
        return "no_retrain"

    retrain = BashOperator(task_id="retrain", bash_command=RETRAIN_COMMAND)
    no_retrain = EmptyOperator(task_id="no_retrain")

    monitor >> decide() >> [retrain, no_retrain]
