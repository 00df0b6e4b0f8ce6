#!/usr/bin/env bash
# Run orchestration/airflow_dag.py for real with Apache Airflow, in throwaway folders:
#   1. load the DAG (no import errors, tasks monitor -> decide -> retrain | no_retrain);
#   2. `airflow dags test` on a batch without drift: verdict ok, retrain skipped;
#   3. `airflow dags test` on a drifted batch: verdict decay, retrain runs, and the store
#      holds exactly one root run triggered by that monitoring run.
# Airflow is not a dependency of mlcycle: it lives in its own virtual environment.
#
# usage: scripts/check_airflow_dag.sh [AIRFLOW_VENV]
#   AIRFLOW_VENV (default .venv-airflow) is created with apache-airflow==$AIRFLOW_VERSION when
#   it has no `airflow` (takes 1-5 minutes). mlcycle comes from $MLCYCLE_VENV (default .venv).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
AIRFLOW_VENV="$(realpath -m "${1:-${MLCYCLE_AIRFLOW_VENV:-$HERE/.venv-airflow}}")"
AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.3.2}"
MLCYCLE_VENV="$(realpath -m "${MLCYCLE_VENV:-$HERE/.venv}")"
PY="$MLCYCLE_VENV/bin/python"

if [ ! -x "$AIRFLOW_VENV/bin/airflow" ]; then
  echo "== installing apache-airflow==$AIRFLOW_VERSION into $AIRFLOW_VENV"
  python3 -m venv "$AIRFLOW_VENV"
  "$AIRFLOW_VENV/bin/pip" install --quiet "apache-airflow==$AIRFLOW_VERSION"
fi
AIRFLOW="$AIRFLOW_VENV/bin/airflow"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export AIRFLOW_HOME="$WORK/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$HERE/orchestration"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export MLCYCLE_BIN="$MLCYCLE_VENV/bin/mlcycle"
export MLCYCLE_ROOT="$WORK/mlcycle"
unset MLFLOW_TRACKING_URI MLFLOW_RUN_ID MLFLOW_EXPERIMENT_ID || true
mkdir -p "$AIRFLOW_HOME" "$MLCYCLE_ROOT"
quiet() { grep -v -e graphviz -e 'pip install graphviz' -e 'You might need to install' || true; }

echo "== Airflow $("$AIRFLOW" version 2>/dev/null | tail -1) in $AIRFLOW_VENV; work folder $WORK"
echo "== a champion to watch (small, fast)"
"$MLCYCLE_BIN" train data.n_rows=3000 model=logistic_regression tune.n_trials=3 tune.cv_folds=2 \
  evaluate.plots=false hydra.run.dir="$WORK/hydra" >"$WORK/train.log" 2>&1 || { tail -5 "$WORK/train.log"; exit 1; }
grep -E '^(mlcycle:|  registered)' "$WORK/train.log"

echo "== airflow db migrate; load the DAG"
"$AIRFLOW" db migrate >/dev/null 2>&1
"$AIRFLOW" dags reserialize >/dev/null 2>&1
errors="$("$AIRFLOW" dags list-import-errors -o json 2>/dev/null | tail -1)"
[ "$errors" = "[]" ] || [ "$errors" = "No data found" ] || { echo "import errors: $errors"; exit 1; }
"$AIRFLOW" dags list -o json 2>/dev/null | tail -1 | grep -q '"dag_id": "mlcycle_monitor"' || { echo "DAG mlcycle_monitor not loaded"; exit 1; }
"$AIRFLOW" tasks list mlcycle_monitor 2>&1 | quiet | grep -E '^(monitor|decide|retrain|no_retrain)$' | sort | tr '\n' ' '
echo

states() {  # task=state pairs of the DAG run at logical date $1
  local run_id
  run_id="$("$AIRFLOW" dags list-runs mlcycle_monitor -o json 2>/dev/null | tail -1 |
    "$PY" -c 'import json,sys; d=sys.argv[1]; print(next(r["run_id"] for r in json.load(sys.stdin) if r["logical_date"].startswith(d)))' "$1")"
  "$AIRFLOW" tasks states-for-dag-run mlcycle_monitor "$run_id" -o json 2>/dev/null | tail -1 |
    "$PY" -c 'import json,sys; print(" ".join(sorted(t["task_id"] + "=" + t["state"] for t in json.load(sys.stdin))))'
}

run_dag() {  # logical date, conf JSON -> prints the task states
  local started=$SECONDS
  "$AIRFLOW" dags test mlcycle_monitor "$1" -c "$2" >"$WORK/dag-$1.log" 2>&1 || {
    grep -E 'error|Error' "$WORK/dag-$1.log" | quiet | tail -5; echo "dags test failed"; exit 1; }
  grep -o 'verdict: [A-Z]* (exit code [0-9]*)' "$WORK/dag-$1.log" | head -1
  echo "  dags test took $((SECONDS - started)) s"
}

echo "== DAG run 1: batch without drift"
run_dag 2026-01-01 '{"batch_overrides": "batch.n_rows=1500 batch.seed=11", "monitor_overrides": "monitor.report=false"}'
got="$(states 2026-01-01)"; echo "  $got"
[ "$got" = "decide=success monitor=success no_retrain=success retrain=skipped" ] || { echo "unexpected task states"; exit 1; }

echo "== DAG run 2: drifted batch (generator drift=2)"
run_dag 2026-01-02 '{"batch_overrides": "batch.n_rows=1500 batch.seed=12 batch.drift=2", "monitor_overrides": "monitor.report=false"}'
got="$(states 2026-01-02)"; echo "  $got"
[ "$got" = "decide=success monitor=success no_retrain=skipped retrain=success" ] || { echo "unexpected task states"; exit 1; }

echo "== the tracking store: one retrain, linked to the monitoring run"
"$PY" - <<'EOF'
from mlflow import MlflowClient
import os
client = MlflowClient(f"sqlite:///{os.environ['MLCYCLE_ROOT']}/mlflow.db")
exp = client.get_experiment_by_name("mlcycle").experiment_id
monitors = client.search_runs([exp], "tags.`mlcycle.run_kind` = 'monitor'", order_by=["attributes.start_time ASC"])
assert [m.data.tags["mlcycle.verdict"] for m in monitors] == ["ok", "decay"], [m.data.tags for m in monitors]
for mon in monitors:
    triggered = client.search_runs([exp], f"tags.`mlcycle.triggered_by` = '{mon.info.run_id}'")
    expected = 1 if mon.data.tags["mlcycle.verdict"] == "decay" else 0
    assert len(triggered) == expected, (mon.info.run_id, len(triggered))
    for run in triggered:
        assert run.info.status == "FINISHED" and "mlflow.parentRunId" not in run.data.tags
        print(f"  monitoring run {mon.info.run_id} (decay) -> retrain root run {run.info.run_id}, "
              f"version {run.data.tags.get('mlcycle.registered_version')}")
champion = client.get_model_version_by_alias("mlcycle-ecommerce", "champion").version
print(f"  champion after the loop: version {champion}")
EOF
echo "OK: the Airflow DAG loads and runs monitor -> decide -> retrain | no_retrain end to end"
