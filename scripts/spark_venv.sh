#!/usr/bin/env bash
# A virtual environment for `mlcycle predict --engine spark`: pyspark (mlcycle's `spark` extra)
# plus mlcycle itself, editable, so Spark's driver and its Python workers run this checkout's
# code. pyspark stays out of mlcycle's own dependencies. Spark needs Java: Debian's
# default-jre-headless (installed here when missing and we may: root or sudo).
#
# usage: scripts/spark_venv.sh [SPARK_VENV]   (default .venv-spark; nothing to do when current)
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$(realpath -m "${1:-${MLCYCLE_SPARK_VENV:-$HERE/.venv-spark}}")"
STAMP="$VENV/.installed"

if ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  echo "== installing Java (default-jre-headless) for Spark"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq default-jre-headless >/dev/null
fi
echo "== java: $(java -version 2>&1 | head -1)"

if [ ! -f "$STAMP" ] || [ "$HERE/pyproject.toml" -nt "$STAMP" ]; then
  echo "== installing pyspark + mlcycle (editable) into $VENV"
  test -x "$VENV/bin/python" || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$HERE[spark]"
  touch "$STAMP"
fi
echo "== $("$VENV/bin/python" -c 'import pyspark, mlcycle; print(f"pyspark {pyspark.__version__}, mlcycle from {mlcycle.__file__}")')"
