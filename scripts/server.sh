#!/usr/bin/env bash
# mlcycle's team tracking server on this machine: a PostgreSQL cluster kept in the project
# (.pgdata/) and `mlflow server` on it, both on 127.0.0.1 by default. docs/operations.md.
#
#   scripts/server.sh start | stop | status        PostgreSQL + mlflow server (make server / server-stop)
#   scripts/server.sh db-start | db-stop           PostgreSQL only (CI, Optuna storage)
#   scripts/server.sh db-create NAME               create a database on the cluster
#   scripts/server.sh db-uri [--with-password] [NAME]   SQLAlchemy URL of a database (default: mlflow)
#   scripts/server.sh backup [FOLDER]              pg_dump of the tracking (and auth) databases
#   scripts/server.sh upgrade [FOLDER]             backup, migrate, compare row counts (server stopped)
#
# Settings (environment): MLCYCLE_PGDATA (.pgdata), MLCYCLE_SERVER_DIR (.server: pid, logs,
# generated auth config), MLCYCLE_PG_PORT (5433), MLCYCLE_PG_USER (mlcycle), MLCYCLE_PG_DB
# (mlflow), MLCYCLE_SERVER_HOST (127.0.0.1), MLCYCLE_SERVER_PORT (5000), MLCYCLE_SERVER_WORKERS
# (1), MLCYCLE_ARTIFACTS_DESTINATION (mlartifacts-server/), MLCYCLE_ALLOWED_HOSTS,
# MLCYCLE_CORS_ORIGINS, MLCYCLE_MLFLOW (.venv/bin/mlflow; mlcycle must be installed beside it).
# Basic auth: MLCYCLE_AUTH=1, admin password from MLCYCLE_AUTH_ADMIN_PASSWORD (or
# MLFLOW_AUTH_ADMIN_PASSWORD), needed the first time only; MLCYCLE_AUTH_DEFAULT_PERMISSION (READ).
#
# Secrets: the database password is generated at first start and kept only in
# $MLCYCLE_PGDATA/pgpass (mode 600, read by libpq through PGPASSFILE), so no password appears
# in any URI, command line or log. The auth config and Flask secret are generated in
# $MLCYCLE_SERVER_DIR (mode 600). Nothing secret is ever written into the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGROOT=${MLCYCLE_PGDATA:-$ROOT/.pgdata}
STATE=${MLCYCLE_SERVER_DIR:-$ROOT/.server}
PG_PORT=${MLCYCLE_PG_PORT:-5433}
PG_USER=${MLCYCLE_PG_USER:-mlcycle}
PG_DB=${MLCYCLE_PG_DB:-mlflow}
AUTH_DB=${PG_DB}_auth
HOST=${MLCYCLE_SERVER_HOST:-127.0.0.1}
PORT=${MLCYCLE_SERVER_PORT:-5000}
WORKERS=${MLCYCLE_SERVER_WORKERS:-1}
ARTIFACTS=${MLCYCLE_ARTIFACTS_DESTINATION:-$ROOT/mlartifacts-server}
MLFLOW=${MLCYCLE_MLFLOW:-$ROOT/.venv/bin/mlflow}
AUTH=${MLCYCLE_AUTH:-0}
DATA=$PGROOT/data
export PGPASSFILE=$PGROOT/pgpass

say() { echo "server.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- PostgreSQL binaries
find_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 ||
    die "PostgreSQL is not installed and apt-get is not available: install PostgreSQL (initdb and pg_ctl on PATH) and retry"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
    sudo="sudo -n"
  fi
  say "PostgreSQL not found: installing Debian's postgresql package (apt-get install -y postgresql) ..."
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null 2>&1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  } || die "apt-get install postgresql failed"
}

pg_bin() {
  PGBIN=$(find_pg_bin) || { install_postgres; PGBIN=$(find_pg_bin) || die "PostgreSQL installed but initdb not found"; }
}

# initdb and postgres refuse to run as root: as root, run them as the `postgres` user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$@"; }

db_running() { [ -s "$DATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

init_cluster() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run PostgreSQL as (PostgreSQL refuses root); run as a normal user"
  fi
  mkdir -p "$PGROOT"
  chmod 700 "$PGROOT"
  local pw pwfile
  pw=$(random_secret)
  pwfile=$PGROOT/.initdb-pw
  (umask 077; printf '%s\n' "$pw" >"$pwfile")
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PGROOT" "$pwfile"
    runuser -u postgres -- test -x "$PGROOT" ||
      die "the postgres user cannot reach $PGROOT (a parent folder is not traversable); set MLCYCLE_PGDATA to a folder it can reach, e.g. /var/tmp/mlcycle-pgdata"
  fi
  say "creating a PostgreSQL cluster in $DATA (superuser $PG_USER, password in $PGPASSFILE)"
  as_pg "$PGBIN/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --no-locale \
    >"$PGROOT/initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed, see $PGROOT/initdb.log"; }
  rm -f "$pwfile"
  (umask 077; printf '127.0.0.1:*:*:%s:%s\nlocalhost:*:*:%s:%s\n' "$PG_USER" "$pw" "$PG_USER" "$pw" >"$PGPASSFILE")
}

db_start() {
  pg_bin
  [ -s "$DATA/PG_VERSION" ] || init_cluster
  [ -s "$PGPASSFILE" ] || die "$PGPASSFILE is missing: the cluster in $DATA was not made by this script"
  if ! db_running; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$PGROOT/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" start >/dev/null ||
      die "PostgreSQL did not start, see $PGROOT/postgres.log (is port $PG_PORT in use? set MLCYCLE_PG_PORT)"
    say "PostgreSQL running on 127.0.0.1:$PG_PORT (cluster $DATA)"
  fi
  db_create "$PG_DB"
}

db_create() {
  local name=$1
  if [ -z "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
    psql_ -d postgres -c "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

db_stop() {
  pg_bin
  if db_running; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    say "PostgreSQL stopped"
  fi
}

db_uri() {
  local with_password=0 name=$PG_DB
  [ "${1:-}" = "--with-password" ] && { with_password=1; shift; }
  name=${1:-$PG_DB}
  if [ "$with_password" = 1 ]; then
    local pw
    pw=$(head -n1 "$PGPASSFILE" | cut -d: -f5-)
    echo "postgresql+psycopg2://$PG_USER:$pw@127.0.0.1:$PG_PORT/$name"
  else
    echo "postgresql+psycopg2://$PG_USER@127.0.0.1:$PG_PORT/$name"
  fi
}

# ---------------------------------------------------------------- mlflow server
server_pid() { [ -s "$STATE/mlflow.pid" ] && kill -0 "$(cat "$STATE/mlflow.pid")" 2>/dev/null && cat "$STATE/mlflow.pid"; }

PY() { "$(dirname "$MLFLOW")/python" "$@"; }

healthy() { PY -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://$1:$PORT/health" >/dev/null 2>&1; }

port_taken() { PY -c 'import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)' "$1" "$PORT"; }

auth_setup() {
  db_create "$AUTH_DB"
  local password=${MLCYCLE_AUTH_ADMIN_PASSWORD:-${MLFLOW_AUTH_ADMIN_PASSWORD:-}}
  [ -n "$password" ] && export MLFLOW_AUTH_ADMIN_PASSWORD=$password
  (umask 077; cat >"$STATE/basic_auth.ini" <<EOF
[mlflow]
default_permission = ${MLCYCLE_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $(db_uri "$AUTH_DB")
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Check each user's password (PBKDF2, slow on purpose) once a minute, not on every request.
# With one worker, password and permission changes through the API apply at once.
auth_cache_ttl_seconds = ${MLCYCLE_AUTH_CACHE_SECONDS:-60}
EOF
  )
  export MLFLOW_AUTH_CONFIG_PATH=$STATE/basic_auth.ini
  if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
    [ -s "$STATE/flask_secret_key" ] || (umask 077; random_secret >"$STATE/flask_secret_key")
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$STATE/flask_secret_key")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
  fi
}

start() {
  [ -x "$MLFLOW" ] || die "$MLFLOW not found: run 'make venv' first (or set MLCYCLE_MLFLOW)"
  mkdir -p "$STATE" "$ARTIFACTS"
  chmod 700 "$STATE"
  db_start
  if pid=$(server_pid); then
    say "mlflow server already running (pid $pid) on http://$HOST:$PORT"
    return 0
  fi
  local probe=$HOST
  [ "$HOST" = 0.0.0.0 ] && probe=127.0.0.1
  port_taken "$probe" && die "port $PORT on $HOST is already in use: set MLCYCLE_SERVER_PORT"
  local allowed=${MLCYCLE_ALLOWED_HOSTS:-}
  if [ -z "$allowed" ]; then
    case $HOST in
      127.0.0.1|localhost) allowed="127.0.0.1,127.0.0.1:$PORT,localhost,localhost:$PORT" ;;
      *) die "serving on $HOST needs MLCYCLE_ALLOWED_HOSTS (the host names clients use, e.g. mlflow.example.com,10.0.0.5:$PORT)" ;;
    esac
  fi
  local cors=${MLCYCLE_CORS_ORIGINS:-http://127.0.0.1:$PORT,http://localhost:$PORT}
  local uri
  uri=$(db_uri)
  # mlflow server would migrate a schema an older MLflow wrote, silently and without a backup
  # (and the older MLflow could not read it any more). `mlcycle db check` reads the revision
  # without migrating and refuses an older or unknown one in one line naming
  # `scripts/server.sh upgrade`, which backs up, migrates and compares row counts.
  PY -m mlcycle db check --tracking-uri "$uri" --upgrade-command "scripts/server.sh upgrade" >&2 || exit $?
  # A database without MLflow's schema gets it once, before any worker starts.
  if [ -z "$(psql_ -d "$PG_DB" -tAc "SELECT to_regclass('public.alembic_version')")" ]; then
    say "creating the tracking schema (mlflow db upgrade $uri)"
    "$MLFLOW" db upgrade "$uri" >>"$STATE/mlflow-upgrade.log" 2>&1 || die "mlflow db upgrade failed, see $STATE/mlflow-upgrade.log"
  fi
  local extra=()
  if [ "$AUTH" = 1 ]; then
    auth_setup
    extra+=(--app-name basic-auth)
  elif [ "$HOST" != 127.0.0.1 ] && [ "$HOST" != localhost ]; then
    say "warning: serving on $HOST without authentication (MLCYCLE_AUTH=1 turns basic auth on)"
  fi
  # One worker, no job runner: 2 processes, no Nagle delay (DESIGN.md, measured costs).
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW" server \
    --backend-store-uri "$uri" --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" --port "$PORT" --workers "$WORKERS" \
    --allowed-hosts "$allowed" --cors-allowed-origins "$cors" "${extra[@]}" \
    >>"$STATE/mlflow.log" 2>&1 </dev/null &
  echo $! >"$STATE/mlflow.pid"
  local i
  for i in $(seq 1 240); do
    healthy "$probe" && break
    if ! kill -0 "$(cat "$STATE/mlflow.pid")" 2>/dev/null; then
      rm -f "$STATE/mlflow.pid"
      tail -n 20 "$STATE/mlflow.log" >&2
      die "mlflow server exited, see $STATE/mlflow.log"
    fi
    sleep 0.5
  done
  healthy "$probe" || die "mlflow server did not answer on http://$probe:$PORT/health within 120 s, see $STATE/mlflow.log"
  say "mlflow server on http://$HOST:$PORT (pid $(cat "$STATE/mlflow.pid"); backend $uri; artifacts $ARTIFACTS; auth $([ "$AUTH" = 1 ] && echo on || echo off))"
  say "log to it: .venv/bin/mlcycle train mlflow=server   (or MLFLOW_TRACKING_URI=http://$HOST:$PORT)"
}

stop_server() {
  local pid i
  if pid=$(server_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
    say "mlflow server stopped"
  fi
  rm -f "$STATE/mlflow.pid"
}

status() {
  pg_bin
  if db_running; then echo "postgresql: running (127.0.0.1:$PG_PORT, $DATA)"; else echo "postgresql: stopped"; fi
  if pid=$(server_pid); then echo "mlflow server: running (pid $pid, http://$HOST:$PORT)"; else echo "mlflow server: stopped"; fi
}

upgrade() {
  [ -x "$MLFLOW" ] || die "$MLFLOW not found: run 'make venv' first (or set MLCYCLE_MLFLOW)"
  if pid=$(server_pid); then die "the mlflow server is running (pid $pid): stop it first (make server-stop)"; fi
  mkdir -p "$STATE"
  db_start
  local folder=${1:-$ROOT/backups}
  # The auth database (users, permissions) is migrated by the server itself at its next start.
  dump "$AUTH_DB" "$folder"
  # The tracking database: the one implementation mlcycle has (`mlcycle db upgrade`, also
  # `make db-upgrade`): pg_dump first, MLflow's migration, row counts compared.
  MLCYCLE_PG_DUMP=$PGBIN/pg_dump PY -m mlcycle db upgrade --tracking-uri "$(db_uri)" --backup-dir "$folder" >&2 ||
    die "the upgrade stopped (see above); the server was not started"
  say "start the server with: make server"
}

backup() {
  pg_bin
  db_running || die "PostgreSQL is not running: scripts/server.sh db-start"
  local folder=${1:-$ROOT/backups}
  dump "$PG_DB" "$folder"
  dump "$AUTH_DB" "$folder"
}

# dump DATABASE FOLDER: pg_dump -Fc (consistent while the server runs), mode 600; nothing
# when the database does not exist.
dump() {
  local db=$1 folder=$2 stamp
  [ -n "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ] || return 0
  stamp=$(date +%Y%m%d-%H%M%S)
  mkdir -p "$folder"
  (umask 077; "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -Fc -f "$folder/$db-$stamp.dump" "$db")
  say "wrote $folder/$db-$stamp.dump"
}

case ${1:-} in
  start) start ;;
  stop) stop_server; db_stop ;;
  restart) stop_server; start ;;
  status) status ;;
  db-start) db_start ;;
  db-stop) db_stop ;;
  db-create) pg_bin; db_create "${2:?db-create NAME}" ;;
  db-uri) shift; db_uri "$@" ;;
  backup) shift; backup "$@" ;;
  upgrade) shift; upgrade "$@" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
