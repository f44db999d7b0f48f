#!/usr/bin/env bash
# Local data stack for `make run` and the integration tests: PostgreSQL 15,
# PgBouncer in transaction pooling mode in front of it, and Redis, all on
# 127.0.0.1 with their data, sockets, pid files and logs inside one directory.
#
#   scripts/stack.sh start|stop|status DIR PG_PORT PGBOUNCER_PORT REDIS_PORT
#
# start   creates DIR, runs initdb once, (re)writes the configs for the given
#         ports, starts whatever is not running yet and waits (bounded) until
#         each server answers. Starting a running stack is a no-op.
# stop    stops PgBouncer, PostgreSQL and Redis; stopping a stopped stack is OK.
# status  prints one line per server; exit 0 only when all three answer.
#
# Environment:
#   STACK_USER=postgres   unprivileged account the servers run as when this
#                         script runs as root (PostgreSQL and PgBouncer refuse root)
#   STACK_FSYNC=on|off    off trades crash safety for speed (tests use off;
#                         a crash can then corrupt the cluster: only for throwaway data)
#   STACK_WAIT_SECONDS=30 how long start waits for each server
#   PG_BIN=/usr/lib/postgresql/15/bin
#
# Layout of DIR: pg/ (cluster), redis/ (redis working dir, nothing persisted),
# run/ (unix sockets, pid files), log/ (postgres.log, pgbouncer.log, redis.log),
# pgbouncer.ini, pgbouncer_users.txt, redis.conf.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
REDIS_BIN=${REDIS_BIN:-/usr/bin/redis-server}
STACK_USER=${STACK_USER:-postgres}
STACK_FSYNC=${STACK_FSYNC:-on}
STACK_WAIT_SECONDS=${STACK_WAIT_SECONDS:-30}
# Our clients pass host/port/user/db explicitly; a stray PGSERVICE or PGOPTIONS
# from the caller's environment must not change what they connect to.
unset PGSERVICE PGSERVICEFILE PGOPTIONS PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSSLMODE
export PGCONNECT_TIMEOUT=5
# PgBouncer needs a descriptor per client and server connection (max_client_conn = 1000).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

die() {
  echo "stack: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|status DIR PG_PORT PGBOUNCER_PORT REDIS_PORT" >&2
  exit 2
}

[ $# -eq 5 ] || usage
action=$1
case "$action" in start|stop|status) ;; *) usage ;; esac
for port in "$3" "$4" "$5"; do
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "invalid port '$port'"
done
PG_PORT=$3
PGBOUNCER_PORT=$4
REDIS_PORT=$5
[ "$PG_PORT" != "$PGBOUNCER_PORT" ] && [ "$PG_PORT" != "$REDIS_PORT" ] && [ "$PGBOUNCER_PORT" != "$REDIS_PORT" ] \
  || die "the three ports must differ (got $PG_PORT $PGBOUNCER_PORT $REDIS_PORT)"

if [ "$action" = start ]; then
  mkdir -p "$2"
elif [ ! -d "$2" ]; then
  [ "$action" = stop ] && { echo "stack: nothing to stop ($2 does not exist)"; exit 0; }
  die "no stack directory $2"
fi
DIR=$(cd "$2" && pwd -P)
PGDATA_DIR=$DIR/pg
RUN_DIR=$DIR/run
LOG_DIR=$DIR/log
# The servers inherit our working directory, which the stack user may not be able to enter.
cd "$DIR"

# Unix socket paths are limited to 107 bytes; fail with the reason rather than
# with PostgreSQL's terse "Unix-domain socket path ... is too long".
socket_path="$RUN_DIR/.s.PGSQL.$PGBOUNCER_PORT"
[ ${#socket_path} -le 100 ] || die "stack directory path too long for unix sockets ($socket_path); use a shorter DIR"

# Runs a command as the unprivileged stack user when we are root, as ourselves
# otherwise. setpriv rather than runuser/su: no PAM session, so the raised fd
# limit above survives. fd 9 is our start lock: daemons must not inherit it, or
# they would hold it for their whole life.
as_stack_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$STACK_USER" --regid="$(id -g "$STACK_USER")" --init-groups -- "$@" 9>&-
  else
    "$@" 9>&-
  fi
}

# True while PID exists and is not a zombie: a daemon's parent is init, which may
# reap it late, and a zombie no longer holds any port or file.
process_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the state follows "(comm) ", and comm may contain spaces
  [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

pid_alive() {
  local pidfile=$1 pid
  [ -s "$pidfile" ] || return 1
  pid=$(head -n1 "$pidfile" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && process_running "$pid"
}

# Waits until PID is gone, up to SECS seconds.
wait_gone() {
  local pid=$1 secs=$2 deadline
  deadline=$((SECONDS + secs))
  while process_running "$pid"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
  return 0
}

pg_running() {
  [ -f "$PGDATA_DIR/PG_VERSION" ] && as_stack_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

# The *_ours checks prove that what answers on the port is the server of DIR,
# not another stack's (a test stack, `make run` in another checkout): PgBouncer
# keeps running when its TCP port is taken, so "something answers" is not enough.
pg_ours() {
  [ "$(psql -X -A -t -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'show data_directory' 2>/dev/null)" \
    = "$PGDATA_DIR" ]
}

pgbouncer_ours() {
  psql -X -A -t -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U app -d pgbouncer -c 'show config' 2>/dev/null \
    | grep -qF "pidfile|$RUN_DIR/pgbouncer.pid|" \
    && psql -X -A -t -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U app -d app -c 'select 1' 2>/dev/null | grep -qx 1
}

redis_ours() {
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get pidfile 2>/dev/null | sed -n 2p)" = "$RUN_DIR/redis.pid" ]
}

log_size() {
  stat -c %s "$1" 2>/dev/null || echo 0
}

# wait_for NAME LOGFILE LOG_OFFSET PIDFILE FATAL_REGEX CHECK...
# Polls CHECK every 0.1 s for up to STACK_WAIT_SECONDS. Gives up early when the
# process in PIDFILE died or the log grew a line matching FATAL_REGEX after
# LOG_OFFSET. On failure prints why and the log's new lines, and returns 1.
wait_for() {
  local name=$1 logfile=$2 offset=$3 pidfile=$4 fatal=$5
  shift 5
  local deadline=$((SECONDS + STACK_WAIT_SECONDS)) why=""
  until "$@"; do
    if [ -n "$pidfile" ] && [ -s "$pidfile" ] && ! pid_alive "$pidfile"; then
      why="exited"
    elif [ -n "$fatal" ] && tail -c +$((offset + 1)) "$logfile" 2>/dev/null | grep -qE "$fatal"; then
      why="failed"
    elif [ $SECONDS -ge $deadline ]; then
      why="did not answer within ${STACK_WAIT_SECONDS}s"
    fi
    if [ -n "$why" ]; then
      echo "stack: $name $why; log $logfile says:" >&2
      tail -c +$((offset + 1)) "$logfile" 2>/dev/null | tail -n 20 >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

prepare_dirs() {
  mkdir -p "$DIR/redis" "$RUN_DIR" "$LOG_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    id "$STACK_USER" >/dev/null 2>&1 || die "user $STACK_USER does not exist (install postgresql-15 or set STACK_USER)"
    # The servers append to these logs themselves (as STACK_USER) and we append their
    # start-up errors, so create them up front with the right owner.
    touch "$LOG_DIR/pgbouncer.log" "$LOG_DIR/redis.log"
    chown "$STACK_USER:" "$DIR" "$DIR/redis" "$RUN_DIR" "$LOG_DIR" "$LOG_DIR/pgbouncer.log" "$LOG_DIR/redis.log"
    # PostgreSQL insists on owning its data directory (e.g. after a copy made as root).
    if [ -d "$PGDATA_DIR" ] && [ "$(stat -c %U "$PGDATA_DIR")" != "$STACK_USER" ]; then
      chown -R "$STACK_USER:" "$PGDATA_DIR"
    fi
    as_stack_user test -w "$DIR" \
      || die "$DIR is not reachable by user $STACK_USER: make its parents searchable (chmod o+x) or use another DIR"
  fi
  chmod 0700 "$RUN_DIR"
}

init_cluster() {
  [ -f "$PGDATA_DIR/PG_VERSION" ] && return 0
  echo "stack: initdb $PGDATA_DIR"
  local nosync=()
  [ "$STACK_FSYNC" = off ] && nosync=(--no-sync)
  # A half-finished earlier initdb leaves a directory initdb refuses to reuse.
  rm -rf "$PGDATA_DIR"
  if ! as_stack_user "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust "${nosync[@]}" >"$LOG_DIR/initdb.log" 2>&1; then
    tail -n 20 "$LOG_DIR/initdb.log" >&2
    die "initdb failed (log: $LOG_DIR/initdb.log)"
  fi
  # Trust only over the unix socket (a 0700 directory) and 127.0.0.1; nothing else.
  cat >"$PGDATA_DIR/pg_hba.conf" <<'EOF'
# Written by scripts/stack.sh: local development/test cluster.
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
  echo "include_if_exists = 'stack.conf'" >>"$PGDATA_DIR/postgresql.conf"
  [ "$(id -u)" -eq 0 ] && chown "$STACK_USER:" "$PGDATA_DIR/pg_hba.conf"
  return 0
}

# Rewritten on every start so the ports and paths always match the arguments.
write_configs() {
  {
    echo "# Written by scripts/stack.sh on every start."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PG_PORT"
    echo "unix_socket_directories = '$RUN_DIR'"
    echo "max_connections = 100"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    if [ "$STACK_FSYNC" = off ]; then
      echo "# Test mode: no durability, faster. Never for data you want to keep."
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    fi
  } >"$PGDATA_DIR/stack.conf"

  printf '"app" ""\n' >"$DIR/pgbouncer_users.txt"
  cat >"$DIR/pgbouncer.ini" <<EOF
; Written by scripts/stack.sh on every start.
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $RUN_DIR
auth_type = trust
auth_file = $DIR/pgbouncer_users.txt
stats_users = app
; Transaction pooling: a server connection belongs to a client only for one
; transaction, so clients keep no session state (no named prepared statements,
; no session SET) and there is nothing to reset between clients.
pool_mode = transaction
server_reset_query =
max_client_conn = 1000
default_pool_size = 20
; After a failed server login (PostgreSQL restarting) PgBouncer refuses clients for this long
; ("server login has been failing, try again later"); the default 15 s turned a 2-second
; PostgreSQL restart into ~20 s of 503s in the soak.
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = $LOG_DIR/pgbouncer.log
pidfile = $RUN_DIR/pgbouncer.pid
EOF

  cat >"$DIR/redis.conf" <<EOF
# Written by scripts/stack.sh on every start. Cache only: nothing is persisted.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $RUN_DIR/redis.pid
logfile $LOG_DIR/redis.log
dir $DIR/redis
save ""
appendonly no
EOF
  if [ "$(id -u)" -eq 0 ]; then
    chown "$STACK_USER:" "$PGDATA_DIR/stack.conf" "$DIR/pgbouncer_users.txt" "$DIR/pgbouncer.ini" "$DIR/redis.conf"
  fi
}

start_postgres() {
  local logfile=$LOG_DIR/postgres.log offset
  # Running with other ports (an earlier start with other arguments): restart to take the new stack.conf.
  if pg_running && ! pg_ours; then
    echo "stack: postgres of $DIR does not answer on 127.0.0.1:$PG_PORT; restarting it"
    as_stack_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null || die "postgres did not stop"
  fi
  offset=$(log_size "$logfile")
  if ! pg_running; then
    if ! as_stack_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$logfile" -w -t "$STACK_WAIT_SECONDS" start \
        >/dev/null; then
      echo "stack: log $logfile says:" >&2
      tail -c +$((offset + 1)) "$logfile" | tail -n 20 >&2 || true
      die "postgres did not start on 127.0.0.1:$PG_PORT"
    fi
  fi
  wait_for "postgres on 127.0.0.1:$PG_PORT" "$logfile" "$offset" "" "" pg_ours \
    || die "postgres on 127.0.0.1:$PG_PORT is not the one of $DIR (port taken by another server?)"
  # Role and database for the app; idempotent so every start can run it.
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres >/dev/null <<'EOF' \
    || die "could not create role/database app (log: $logfile)"
SELECT 'CREATE ROLE app LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app')
\gexec
SELECT 'CREATE DATABASE app OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app')
\gexec
EOF
}

# start_daemon NAME PIDFILE LOGFILE FATAL_REGEX CHECK_FN COMMAND...
# Starts a self-daemonizing server unless ours already answers; a live one that
# does not answer as ours (started with other ports) is restarted.
start_daemon() {
  local name=$1 pidfile=$2 logfile=$3 fatal=$4 check=$5 offset
  shift 5
  if pid_alive "$pidfile" && ! "$check"; then
    echo "stack: $name: the one of $DIR runs with other settings; restarting it"
    stop_pidfile "$name" "$pidfile"
  fi
  offset=$(log_size "$logfile")
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    if ! as_stack_user "$@" >>"$logfile" 2>&1; then
      tail -c +$((offset + 1)) "$logfile" | tail -n 20 >&2
      die "$name did not start"
    fi
  fi
  if ! wait_for "$name" "$logfile" "$offset" "$pidfile" "$fatal" "$check"; then
    stop_pidfile "$name" "$pidfile"
    die "$name did not start"
  fi
}

start_pgbouncer() {
  start_daemon "pgbouncer on 127.0.0.1:$PGBOUNCER_PORT" "$RUN_DIR/pgbouncer.pid" "$LOG_DIR/pgbouncer.log" \
    "cannot listen on 127\.0\.0\.1:$PGBOUNCER_PORT| FATAL " pgbouncer_ours "$PGBOUNCER_BIN" -d "$DIR/pgbouncer.ini"
}

start_redis() {
  start_daemon "redis on 127.0.0.1:$REDIS_PORT" "$RUN_DIR/redis.pid" "$LOG_DIR/redis.log" \
    "Failed listening|aborting" redis_ours "$REDIS_BIN" "$DIR/redis.conf"
}

# stop_pidfile NAME PIDFILE: TERM (PgBouncer: immediate shutdown; Redis: clean
# shutdown, nothing to save), then KILL if still there after 10 s.
stop_pidfile() {
  local name=$1 pidfile=$2
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(head -n1 "$pidfile" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 10; then
    echo "stack: $name did not stop within 10s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || die "$name (pid $pid) would not die"
  fi
  rm -f "$pidfile"
}

do_start() {
  local t0
  t0=$(date +%s.%N)
  prepare_dirs
  # One start at a time per DIR: two concurrent initdb/pg_ctl runs would trip over each other.
  exec 9>"$DIR/.stack.lock"
  flock -w "$STACK_WAIT_SECONDS" 9 || die "another stack.sh holds $DIR/.stack.lock"
  init_cluster
  write_configs
  start_postgres
  start_pgbouncer
  start_redis
  local took
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  echo "stack: up in ${took}s: postgres 127.0.0.1:$PG_PORT," \
    "pgbouncer 127.0.0.1:$PGBOUNCER_PORT (transaction pooling), redis 127.0.0.1:$REDIS_PORT; logs in $LOG_DIR"
}

do_stop() {
  stop_pidfile pgbouncer "$RUN_DIR/pgbouncer.pid"
  if pg_running; then
    as_stack_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null \
      || die "postgres did not stop (log: $LOG_DIR/postgres.log)"
  fi
  stop_pidfile redis "$RUN_DIR/redis.pid"
  echo "stack: stopped ($DIR)"
}

do_status() {
  local ok=0
  report() {  # NAME PORT CHECK
    local state=up
    "$3" || { state=down; ok=1; }
    printf '%-9s %-5s 127.0.0.1:%s\n' "$1" "$state" "$2"
  }
  report postgres "$PG_PORT" pg_ours
  report pgbouncer "$PGBOUNCER_PORT" pgbouncer_ours
  report redis "$REDIS_PORT" redis_ours
  return $ok
}

case "$action" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
esac
