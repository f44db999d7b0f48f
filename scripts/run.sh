#!/usr/bin/env bash
# What `make run` runs after building: the local data stack (PostgreSQL +
# PgBouncer + Redis under .data/), migrations and demo data, then upstream_app
# and gateway with conf/app.yaml. Ctrl-C (or SIGTERM) stops everything this
# script started: a second Ctrl-C skips the graceful drain.
#
# Environment (defaults match conf/app.yaml):
#   CONFIG=conf/app.yaml  SIDECAR_BUILD_DIR=build  STACK_DIR=.data
#   PG_PORT=55432 (not 5432: leaves a system PostgreSQL alone)
#   PGBOUNCER_PORT=6432  REDIS_PORT=6379
#   DB_URL, REDIS_URL     derived from the ports unless set
#   GATEWAY_URL=http://127.0.0.1:8080  ADMIN_URL=http://127.0.0.1:9901  APP_URL=http://127.0.0.1:8000
#   STOP_TIMEOUT=40       seconds to wait for a graceful exit before SIGKILL
#                         (the gateway drains for drain_delay + in-flight requests)
#   RUN_FOLLOW_LOGS=1     0 = don't tail the two logs on the terminal
# No OTLP collector is started: the binaries treat failed trace exports as harmless.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

BUILD_DIR=${SIDECAR_BUILD_DIR:-build}
CONFIG=${CONFIG:-conf/app.yaml}
STACK_DIR=${STACK_DIR:-.data}
PG_PORT=${PG_PORT:-55432}
PGBOUNCER_PORT=${PGBOUNCER_PORT:-6432}
REDIS_PORT=${REDIS_PORT:-6379}
GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8080}
ADMIN_URL=${ADMIN_URL:-http://127.0.0.1:9901}
APP_URL=${APP_URL:-http://127.0.0.1:8000}
STOP_TIMEOUT=${STOP_TIMEOUT:-40}
RUN_FOLLOW_LOGS=${RUN_FOLLOW_LOGS:-1}
RUN_LOG_DIR=.run
export DB_URL=${DB_URL:-postgresql://app@127.0.0.1:$PGBOUNCER_PORT/app}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}

APP_BIN=$BUILD_DIR/upstream_app/upstream_app
GATEWAY_BIN=$BUILD_DIR/gateway/gateway

say() { echo "run: $*"; }
die() {
  echo "run: $*" >&2
  exit 1
}

for bin in "$APP_BIN" "$GATEWAY_BIN"; do
  [ -x "$bin" ] || die "$bin is missing: build first (make build)"
done
[ -f "$CONFIG" ] || die "no config file $CONFIG"

# As root the servers run as user postgres, which must be able to reach the
# data directory. A checkout under /root is not reachable; use /var/tmp then.
if [ "$(id -u)" -eq 0 ] && [ "${STACK_DIR:0:1}" != / ] \
    && ! setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups -- test -x "$ROOT" 2>/dev/null; then
  STACK_DIR=/var/tmp/sidecar-gateway-data
  say "$ROOT is not searchable by user postgres; keeping the database in $STACK_DIR instead of .data/"
fi
stack() { scripts/stack.sh "$1" "$STACK_DIR" "$PG_PORT" "$PGBOUNCER_PORT" "$REDIS_PORT"; }

mkdir -p "$RUN_LOG_DIR"
app_pid=""
gateway_pid=""
tail_pid=""
stack_started=0
stopping=0
force=0

# stop_process NAME PID: SIGTERM, wait up to STOP_TIMEOUT (a second Ctrl-C sets force), then SIGKILL.
stop_process() {
  local name=$1 pid=$2 deadline
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$force" -eq 1 ] || [ $SECONDS -ge $deadline ]; then
      say "killing $name (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  [ "$stopping" -eq 1 ] && return
  stopping=1
  trap 'force=1' INT
  trap '' TERM
  if [ -n "$gateway_pid$app_pid" ]; then
    say "stopping (graceful, up to ${STOP_TIMEOUT}s; Ctrl-C again to kill now)"
  fi
  # Gateway first: it drains client traffic while the app can still answer it.
  stop_process gateway "$gateway_pid"
  stop_process upstream_app "$app_pid"
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
  if [ "$stack_started" -eq 1 ]; then
    stack stop || status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Leave a stack that was already up (started by hand) running when we exit.
if stack status >/dev/null 2>&1; then
  say "data stack already running in $STACK_DIR; leaving it up on exit"
else
  stack_started=1
  stack start
fi

say "migrating and seeding ($DB_URL)"
"$APP_BIN" --config "$CONFIG" --migrate || die "upstream_app --migrate failed"
"$APP_BIN" --config "$CONFIG" --seed-demo || die "upstream_app --seed-demo failed"

# wait_healthy NAME URL PID: until URL answers 2xx (30 s), failing early if PID exits.
wait_healthy() {
  local name=$1 url=$2 pid=$3 log=$4 deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run: $name exited during start-up; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "run: $name did not answer $url within 30s; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  # Something else may own the port (another `make run`): make sure ours still lives.
  kill -0 "$pid" 2>/dev/null || die "$name exited; is another instance using $url? (log: $log)"
}

: >"$RUN_LOG_DIR/upstream_app.log"
: >"$RUN_LOG_DIR/gateway.log"
"$APP_BIN" --config "$CONFIG" >>"$RUN_LOG_DIR/upstream_app.log" 2>&1 &
app_pid=$!
wait_healthy upstream_app "$APP_URL/healthz" "$app_pid" "$RUN_LOG_DIR/upstream_app.log"
"$GATEWAY_BIN" --config "$CONFIG" >>"$RUN_LOG_DIR/gateway.log" 2>&1 &
gateway_pid=$!
wait_healthy gateway "$GATEWAY_URL/healthz" "$gateway_pid" "$RUN_LOG_DIR/gateway.log"

cat <<EOF

  gateway       $GATEWAY_URL          (try: curl -i $GATEWAY_URL/articles/1)
  gateway admin $ADMIN_URL/metrics
  upstream_app  $APP_URL          (direct, bypassing the gateway)
  postgres      127.0.0.1:$PG_PORT, through PgBouncer: $DB_URL
  redis         $REDIS_URL
  logs          $RUN_LOG_DIR/gateway.log, $RUN_LOG_DIR/upstream_app.log, $STACK_DIR/log/

  Ctrl-C stops everything.

EOF

if [ "$RUN_FOLLOW_LOGS" = 1 ]; then
  tail -n 0 -F "$RUN_LOG_DIR/upstream_app.log" "$RUN_LOG_DIR/gateway.log" &
  tail_pid=$!
fi

# Returns when either binary exits (or a signal arrives and the trap exits).
set +e
wait -n "$app_pid" "$gateway_pid"
code=$?
set -e
if ! kill -0 "$app_pid" 2>/dev/null; then
  # Like a pod whose app container died: the gateway keeps running and its /readyz turns 503.
  echo "run: upstream_app exited (status $code; see $RUN_LOG_DIR/upstream_app.log);" \
       "the gateway keeps running and reports not ready. Ctrl-C stops everything." >&2
  set +e
  wait "$gateway_pid"
  code=$?
  set -e
fi
die "gateway exited (status $code); see $RUN_LOG_DIR/gateway.log"
