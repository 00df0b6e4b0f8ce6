#!/usr/bin/env bash
# The Kubeflow Pipelines environment: kfp + kfp-kubernetes (pinned) + this checkout's mlcycle
# (editable), apart from .venv, as Airflow's is. KFP's local runner runs components with this
# environment's interpreter, so mlcycle and its dependencies must be here too.
# Created or repaired only when something is missing: uv from $MLCYCLE_VENV (default .venv)
# when it has one (seconds), else pip (minutes).
#
# usage: scripts/kfp_venv.sh [KFP_VENV]   (default .venv-kfp)
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
KFP_VENV="$(realpath -m "${1:-$HERE/.venv-kfp}")"
KFP_VERSION="${KFP_VERSION:-2.17.3}"
MLCYCLE_VENV="$(realpath -m "${MLCYCLE_VENV:-$HERE/.venv}")"

ready() {  # kfp at the pinned version, and mlcycle imported from this checkout
  [ -x "$KFP_VENV/bin/python" ] && "$KFP_VENV/bin/python" - "$HERE/src" "$KFP_VERSION" 2>/dev/null <<'PY'
import sys
from pathlib import Path

import kfp
import kfp.kubernetes  # noqa: F401
import mlcycle

sys.exit(0 if kfp.__version__ == sys.argv[2] and Path(mlcycle.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()) else 1)
PY
}

ready && exit 0
echo "== installing kfp==$KFP_VERSION and mlcycle ($HERE) into $KFP_VENV"
packages=("kfp==$KFP_VERSION" "kfp-kubernetes==$KFP_VERSION" -e "$HERE")
if [ -x "$MLCYCLE_VENV/bin/uv" ]; then
  [ -x "$KFP_VENV/bin/python" ] || "$MLCYCLE_VENV/bin/uv" venv --quiet --python python3 "$KFP_VENV"
  "$MLCYCLE_VENV/bin/uv" pip install --quiet --python "$KFP_VENV/bin/python" "${packages[@]}"
else
  [ -x "$KFP_VENV/bin/python" ] || python3 -m venv "$KFP_VENV"
  "$KFP_VENV/bin/pip" install --quiet "${packages[@]}"
fi
ready || { echo "$KFP_VENV: kfp $KFP_VERSION or this checkout's mlcycle still missing"; exit 1; }
