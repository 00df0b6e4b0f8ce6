#!/usr/bin/env bash
# Run orchestration/kfp_pipeline.py for real with KFP's local runner, in throwaway folders:
#   1. `mlcycle-loop` on a drifted batch: train (a root run, seven stages), monitor (verdict
#      decay), decide, retrain (a new root run tagged with that monitoring run);
#   2. `mlcycle-loop-big-study` on a batch like the reference: open-study, two tune-worker
#      tasks side by side on one study (a journal file), train resuming it, monitor (ok), no
#      retrain;
#   3. the MLflow store holds exactly that tree.
# kfp.local.SubprocessRunner(use_venv=False) runs each component as a subprocess of the KFP
# environment's own interpreter, so that environment has kfp AND mlcycle (this checkout,
# editable). No Docker daemon, no cluster: the image and KFP's MLflow integration are not used.
#
# usage: scripts/check_kfp_pipeline.sh [KFP_VENV]
#   KFP_VENV (default .venv-kfp) is created when it lacks kfp or this checkout's mlcycle:
#   with uv from $MLCYCLE_VENV (default .venv) when there is one (seconds), else pip (minutes).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
KFP_VENV="$(realpath -m "${1:-${MLCYCLE_KFP_VENV:-$HERE/.venv-kfp}}")"
MLCYCLE_VENV="$(realpath -m "${MLCYCLE_VENV:-$HERE/.venv}")"
"$HERE/scripts/kfp_venv.sh" "$KFP_VENV"
PY="$KFP_VENV/bin/python"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export MLCYCLE_ROOT="$WORK/mlcycle"
unset MLFLOW_TRACKING_URI MLFLOW_RUN_ID MLFLOW_EXPERIMENT_ID MLCYCLE_TUNE_STORAGE || true
mkdir -p "$MLCYCLE_ROOT"
cd "$WORK"
echo "== KFP $("$PY" -c 'import kfp; print(kfp.__version__)') in $KFP_VENV; work folder $WORK"

started=$SECONDS
"$PY" - "$HERE" >"$WORK/kfp.log" 2>&1 <<'EOF' || { grep -E 'Error|error:|FAILURE' "$WORK/kfp.log" | tail -15; echo "the KFP pipelines failed"; exit 1; }
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, f"{sys.argv[1]}/orchestration")
from kfp import local

import kfp_pipeline

local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root="kfp-root", raise_on_error=True)
SMALL = ["data.n_rows=3000", "model=logistic_regression", "tune.cv_folds=2", "evaluate.plots=false"]
MONITOR = ["monitor.report=false"]
runs = {}
started = time.perf_counter()
runs["loop"] = kfp_pipeline.mlcycle_loop(
    train_overrides=[*SMALL, "tune.n_trials=3"],
    batch_overrides=["batch.n_rows=1500", "batch.seed=12", "batch.drift=2"], monitor_overrides=MONITOR,
    retrain_overrides=['monitor.retrain_overrides=["tune.n_trials=2"]'],
).outputs
runs["loop_seconds"] = round(time.perf_counter() - started)
started = time.perf_counter()
runs["big_study"] = kfp_pipeline.mlcycle_loop_big_study(
    tune_storage=f"journal://{Path('study.log').resolve()}",  # one machine: a journal file
    n_trials=6, tune_workers=2, train_overrides=SMALL,
    batch_overrides=["batch.n_rows=1500", "batch.seed=11"], monitor_overrides=MONITOR,
).outputs
runs["big_study_seconds"] = round(time.perf_counter() - started)
Path("outputs.json").write_text(json.dumps(runs))  # (KFP's runner indents what tasks print)
EOF
grep -E "Executing task|finished with status" "$WORK/kfp.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^[0-9:.]+ - (INFO|ERROR) - /  /; s/^ +/  /' | grep -v "^  Executing" || true
echo "  both pipelines took $((SECONDS - started)) s"

echo "== the tracking store"
"$PY" - <<'EOF'
import json
import os
from pathlib import Path

from mlflow import MlflowClient

from mlcycle.config.schema import STAGES

out = json.loads(Path("outputs.json").read_text())
loop, big = out["loop"], out["big_study"]
print(f"  mlcycle-loop ({out['loop_seconds']} s): {loop}")
print(f"  mlcycle-loop-big-study ({out['big_study_seconds']} s): {big}")
assert (loop["verdict"], loop["retrained"]) == ("decay", True), loop
assert (big["verdict"], big["retrained"]) == ("ok", False), big

client = MlflowClient(f"sqlite:///{os.environ['MLCYCLE_ROOT']}/mlflow.db")
exp = client.get_experiment_by_name("mlcycle").experiment_id


def stages_of(run_id):
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`mlcycle.run_kind` = 'stage'")
    return sorted(children, key=lambda r: r.info.start_time)


def whole_pipeline(run_id, expected=STAGES):
    root = client.get_run(run_id)
    assert root.info.status == "FINISHED" and root.data.tags["mlcycle.run_kind"] == "pipeline", root.info
    stages = stages_of(run_id)
    assert [s.info.run_name for s in stages] == list(expected), [s.info.run_name for s in stages]
    assert all(s.info.status == "FINISHED" for s in stages), [(s.info.run_name, s.info.status) for s in stages]
    return root, {s.info.run_name: s for s in stages}


for name, result in (("mlcycle-loop", loop), ("mlcycle-loop-big-study", big)):
    root, _ = whole_pipeline(result["root_run_id"])
    assert root.data.tags["mlcycle.registered_version"] == result["registered_version"]
    mon = client.get_run(result["monitoring_run_id"])
    assert mon.info.status == "FINISHED" and mon.data.tags["mlcycle.verdict"] == result["verdict"]
    triggered = client.search_runs([exp], f"tags.`mlcycle.triggered_by` = '{mon.info.run_id}'")
    assert len(triggered) == (1 if result["retrained"] else 0), triggered
    line = f"  {name}: root run {root.info.run_id} (7 stages FINISHED), version {result['registered_version']}, "
    line += f"monitoring run {mon.info.run_id}: {result['verdict']}"
    if triggered:
        retrained, _ = whole_pipeline(triggered[0].info.run_id)
        line += f" -> retrain root run {retrained.info.run_id} (7 stages FINISHED), version {retrained.data.tags['mlcycle.registered_version']}"
    print(line)

# the big study: open-study's tune run holds every trial (1 of its own + the workers'), and the
# final train resumed the study without running one
_, final = whole_pipeline(big["root_run_id"])
assert final["tune"].data.metrics["trials_run"] == 0 and final["tune"].data.metrics["trials_resumed"] == 6, final["tune"].data.metrics
study = final["tune"].data.tags["mlcycle.study_name"]
shared = f"tags.`mlcycle.study_name` = '{study}' and tags.`mlcycle.stage` = 'tune' and params.storage LIKE 'journal:%'"
opened = [r for r in client.search_runs([exp], shared) if r.info.run_id != final["tune"].info.run_id]
assert len(opened) == 1, [r.info.run_id for r in opened]
trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{opened[0].info.run_id}'")
workers = {t.data.tags.get("mlcycle.worker") for t in trials}
assert len(trials) == 6 and all(t.info.status == "FINISHED" for t in trials), [(t.info.status) for t in trials]
# open-study's own trial and the workers' (how the 5 split between the two depends on timing)
assert len(workers) >= 2, workers
print(f"  study {study}: 6 trials under tune run {opened[0].info.run_id}, from {len(workers)} processes "
      "(open-study's and the tune workers'); "
      "the final train resumed it (0 new trials)")
running = client.search_runs([exp], "attributes.status = 'RUNNING'")
assert not running, [r.info.run_id for r in running]
EOF
echo "OK: both KFP pipelines ran train -> monitor -> decide -> retrain | no retrain with the local runner"
