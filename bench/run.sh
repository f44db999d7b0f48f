#!/usr/bin/env bash
# `make bench`: the gateway, nginx and HAProxy as reverse proxies in front of one
# nginx origin, all on 127.0.0.1, each proxy with one worker on CPU 0 and the
# load generator + origin on CPU 1. Prints req/s, latency and the proxy's CPU
# time per request, and writes the medians to bench/results/latest.md.
# See bench/README.md for the method and the knobs (BENCH_* variables).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
PY=/usr/bin/python3
LIB="$BENCH_DIR/benchlib.py"

DURATION=${BENCH_DURATION:-5}           # seconds per timed run
ROUNDS=${BENCH_ROUNDS:-3}               # interleaved rounds per scenario
WARMUP=${BENCH_WARMUP:-1}               # seconds of untimed load before each timed run
SCENARIOS=${BENCH_SCENARIOS:-"s1 s2 s3 s4 s5 s6 s7 s8"}
PROXIES=${BENCH_PROXIES:-"gateway nginx haproxy"}
PORT_BASE=${BENCH_PORT_BASE:-28100}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/build/gateway/gateway}
PROFILE=${BENCH_PROFILE:-1}             # fixed-count syscalls/request per scenario
CALLGRIND=${BENCH_CALLGRIND:-1}         # fixed-count instructions/request (valgrind)
CALLGRIND_SCENARIOS=${BENCH_CALLGRIND_SCENARIOS:-"s1"}
PROFILE_REQUESTS=${BENCH_PROFILE_REQUESTS:-20000}
CALLGRIND_REQUESTS=${BENCH_CALLGRIND_REQUESTS:-10000}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
KEEP_WORK=${BENCH_KEEP:-0}
# Negative (root only) makes other work on the machine yield to every benchmark process alike.
NICE=${BENCH_NICE:-0}
# Scenario rl: a gateway with one never-triggering Redis rate limit vs the same gateway without.
RL_ALGORITHM=${BENCH_RL_ALGORITHM:-token_bucket}
RL_REDIS_CPU=${BENCH_RL_REDIS_CPU:-$CLIENT_CPU}

# The origin's fixed document: exactly 214 bytes (checked on the wire below).
BODY='{"id":4217,"title":"Proxy benchmark payload","author":{"id":17,"name":"Ada"},"tags":["bench","json","keep-alive"],"published":true,"views":123456,"rating":4.5,"summary":"A fixed JSON document for the proxy bench."}'
BODY_BYTES=214
BIG_BYTES=32768
POST_BYTES=4096

ORIGIN_PORT=$((PORT_BASE + 0))
declare -A PORT_OF=([gateway]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 3)) [haproxy]=$((PORT_BASE + 4)))
GATEWAY_ADMIN_PORT=$((PORT_BASE + 2))
# Separate ports for the instances started under valgrind.
declare -A CG_PORT_OF=([gateway]=$((PORT_BASE + 11)) [nginx]=$((PORT_BASE + 13)) [haproxy]=$((PORT_BASE + 14)))
CG_GATEWAY_ADMIN_PORT=$((PORT_BASE + 12))
# Scenario rl only: its Redis and the rate-limited gateway (PORT_OF[gateway_rl] is set when it starts).
RL_REDIS_PORT=$((PORT_BASE + 8))
RL_GATEWAY_PORT=$((PORT_BASE + 9))
RL_GATEWAY_ADMIN_PORT=$((PORT_BASE + 10))
RL_PROXY=""
# Scenario trace only: the OTLP sink and the two tracing gateways (issue 7).
TRACE_SINK_CPU=${BENCH_TRACE_SINK_CPU:-$CLIENT_CPU}
TRACE_SINK_PORT=$((PORT_BASE + 15))
TRACE10_PORT=$((PORT_BASE + 16))
TRACE10_ADMIN_PORT=$((PORT_BASE + 17))
TRACE100_PORT=$((PORT_BASE + 18))
TRACE100_ADMIN_PORT=$((PORT_BASE + 19))
TRACE_PROXIES=""

declare -A PID_OF=()
STARTED_PIDS=()
ORIGIN_PID=""
WORK=""
T_START=$(date +%s)
TIMEFORMAT='%3U %3S'

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP_WORK" = 1 ] || [ "$rc" -ne 0 ]; then
      log "work directory kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- preflight

has() { command -v "$1" >/dev/null; }

checkTools() {
  local t missing=()
  for t in wrk nginx haproxy curl taskset ss gzip "$PY"; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  # The fixed-count profiles are extras: without their tools they are skipped, not fatal.
  if [ "$PROFILE" = 1 ] && ! { has h2load && { has perf || has strace; }; }; then
    log "warning: syscalls/req skipped: needs h2load (nghttp2-client) and perf (linux-perf) or strace"
    PROFILE=0
  fi
  if [ "$CALLGRIND" = 1 ] && ! { has h2load && has valgrind && has callgrind_control; }; then
    log "warning: instructions/req skipped: needs h2load (nghttp2-client) and valgrind"
    CALLGRIND=0
  fi
  # The br scenarios' response check decodes with the brotli CLI.
  if [[ " $SCENARIOS " == *" s6 "* || " $SCENARIOS " == *" s7 "* ]]; then
    command -v brotli >/dev/null || missing+=(brotli)
  fi
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run \`make bench-deps\`)"
  for px in $PROXIES; do
    case "$px" in
      gateway) [ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not built (run \`make build\`, or BENCH_PROXIES=\"nginx haproxy\")" ;;
      nginx | haproxy) ;;
      *) die "unknown proxy '$px' in BENCH_PROXIES" ;;
    esac
  done
  taskset -c "$PROXY_CPU" true 2>/dev/null || die "CPU $PROXY_CPU is not available (BENCH_PROXY_CPU)"
  taskset -c "$CLIENT_CPU" true 2>/dev/null || die "CPU $CLIENT_CPU is not available (BENCH_CLIENT_CPU)"
  [ "$PROXY_CPU" != "$CLIENT_CPU" ] || log "warning: proxy and client share CPU $PROXY_CPU; CPU figures will be mixed"
}

checkPorts() {
  local p busy=()
  for p in "$ORIGIN_PORT" "${PORT_OF[@]}" "$GATEWAY_ADMIN_PORT" "${CG_PORT_OF[@]}" "$CG_GATEWAY_ADMIN_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then
      busy+=("$p")
    fi
  done
  [ ${#busy[@]} -eq 0 ] || die "ports in use: ${busy[*]} (set BENCH_PORT_BASE to another free range)"
}

# ---------------------------------------------------------------- processes

render() { # template out KEY=VALUE...
  local tpl=$1 out=$2 expr=() kv
  shift 2
  for kv in "$@"; do
    expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  sed "${expr[@]}" "$tpl" >"$out"
}

# Runs a command on one CPU at the benchmark's nice level (exec chain: same PID).
pinned() {
  local cpu=$1
  shift
  taskset -c "$cpu" nice -n "$NICE" "$@"
}

startPinned() { # cpu name cmd... ; sets LAST_PID
  local cpu=$1 name=$2
  shift 2
  # Not through pinned(): a backgrounded function is a subshell, and $! must be the server itself.
  taskset -c "$cpu" nice -n "$NICE" "$@" >"$WORK/$name.out" 2>&1 &
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
}

stopPid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

waitHttp() { # url seconds pid name [soft] ; soft: warn and return 1 instead of exiting
  local url=$1 secs=$2 pid=$3 name=$4 soft=${5:-} i msg
  for ((i = 0; i < secs * 10; i++)); do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.out" >&2 || true
  msg="$name did not answer $url within ${secs}s (output: $WORK/$name.out)"
  kill -0 "$pid" 2>/dev/null || msg="$name exited during startup (output: $WORK/$name.out)"
  if [ -n "$soft" ]; then
    log "warning: $msg"
    return 1
  fi
  die "$msg"
}

startOrigin() {
  mkdir -p "$WORK/origin-tmp" "$WORK/www"
  chmod 1777 "$WORK/origin-tmp"
  "$PY" "$LIB" gen-json "$WORK/www/big.json" "$BIG_BYTES"
  "$PY" "$LIB" gen-json "$WORK/post.json" "$POST_BYTES"
  cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("$WORK/post.json", "rb"))
wrk.body = f:read("*a")
f:close()
EOF
  render "$BENCH_DIR/conf/origin-nginx.conf.in" "$WORK/origin.conf" \
    WORK="$WORK" ORIGIN_PORT="$ORIGIN_PORT" BODY="$BODY"
  startPinned "$CLIENT_CPU" origin nginx -p "$WORK" -e "$WORK/origin.error.log" -c "$WORK/origin.conf"
  ORIGIN_PID=$LAST_PID
  waitHttp "http://127.0.0.1:$ORIGIN_PORT/healthz" 10 "$ORIGIN_PID" origin
}

# proxy port variant(""|cg) ; writes the config and prints the command line words, one a line
proxyCommand() {
  local px=$1 port=$2 variant=$3 name="$1$3"
  case "$px" in
    gateway)
      local admin=$GATEWAY_ADMIN_PORT
      [ "$variant" = cg ] && admin=$CG_GATEWAY_ADMIN_PORT
      render "$BENCH_DIR/conf/gateway.yaml.in" "$WORK/$name.yaml" \
        PORT="$port" ADMIN_PORT="$admin" ORIGIN_PORT="$ORIGIN_PORT"
      printf '%s\n' "$GATEWAY_BIN" --config "$WORK/$name.yaml"
      ;;
    nginx)
      local master=""
      # Under valgrind nginx runs as one process doing the worker's job.
      [ "$variant" = cg ] && master="master_process off;"
      mkdir -p "$WORK/$name-tmp"
      chmod 1777 "$WORK/$name-tmp"
      render "$BENCH_DIR/conf/proxy-nginx.conf.in" "$WORK/$name.conf" \
        WORK="$WORK" NAME="$name" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" MASTER_PROCESS="$master"
      printf '%s\n' nginx -p "$WORK" -e "$WORK/$name.error.log" -c "$WORK/$name.conf"
      ;;
    gateway_rl)
      [ "$variant" = "" ] || die "scenario rl is not supported under callgrind"
      render "$BENCH_DIR/conf/gateway.yaml.in" "$WORK/$name.base.yaml" \
        PORT="$port" ADMIN_PORT="$RL_GATEWAY_ADMIN_PORT" ORIGIN_PORT="$ORIGIN_PORT"
      "$PY" "$BENCH_DIR/ratelimit.py" config "$WORK/$name.base.yaml" "$WORK/$name.yaml" \
        "$RL_REDIS_PORT" "$RL_ALGORITHM" /json >&2 || die "could not write the gateway_rl config"
      printf '%s\n' "$GATEWAY_BIN" --config "$WORK/$name.yaml"
      ;;
    haproxy)
      render "$BENCH_DIR/conf/proxy-haproxy.cfg.in" "$WORK/$name.cfg" \
        PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
      printf '%s\n' haproxy -db -f "$WORK/$name.cfg"
      ;;
  esac
}

startProxy() { # name
  local px=$1 cmd
  mapfile -t cmd < <(proxyCommand "$px" "${PORT_OF[$px]}" "")
  startPinned "$PROXY_CPU" "$px" "${cmd[@]}"
  PID_OF[$px]=$LAST_PID
  waitHttp "http://127.0.0.1:${PORT_OF[$px]}/" 15 "$LAST_PID" "$px"
}

# ---------------------------------------------------------------- measuring

treePids() {
  local p=$1 c
  echo "$p"
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
    treePids "$c"
  done
}

# CPU time (ns) of a process, its threads and its descendants, from schedstat.
treeCpuNs() {
  local sum=0 p f ns rest
  for p in $(treePids "$1"); do
    for f in /proc/"$p"/task/*/schedstat; do
      if read -r ns rest 2>/dev/null <"$f"; then
        sum=$((sum + ns))
      fi
    done
  done
  echo "$sum"
}

# Busy jiffies (user+nice+system+irq+softirq) of the proxy core and of the client core.
coreBusy() {
  awk -v a="cpu$PROXY_CPU" -v b="cpu$CLIENT_CPU" \
    '$1 == a { pa = $2 + $3 + $4 + $7 + $8 } $1 == b { pb = $2 + $3 + $4 + $7 + $8 } END { print pa, pb }' /proc/stat
}

# ---------------------------------------------------------------- scenarios
# Each scenario_<name> sets: SC_DESC, SC_PATH, SC_CONNS, SC_WRK_ARGS, SC_H2LOAD_ARGS,
# SC_CURL_ARGS, the check SC_EXPECT_BYTES (decoded body) / SC_EXPECT_ENC, and
# SC_PROFILE_DIV (the fixed-count profile sends BENCH_PROFILE_REQUESTS / SC_PROFILE_DIV).
# Optional (reset before each scenario function): SC_EXPECT_ENC_BY[proxy] overrides
# SC_EXPECT_ENC for one proxy ("-" = must not be encoded), and SC_BASE names the scenario the
# report compares this one with ("ratios to the uncompressed path").
declare -A SC_EXPECT_ENC_BY=()
SC_BASE=""

scenario_s1() {
  SC_DESC="GET of the ${BODY_BYTES}-byte JSON, 64 keep-alive connections (wrk -t1 -c64)"
  SC_PATH=/json
  SC_CONNS=64
  SC_WRK_ARGS=()
  SC_H2LOAD_ARGS=()
  SC_CURL_ARGS=()
  SC_EXPECT_BYTES=$BODY_BYTES
  SC_EXPECT_ENC=""
  SC_PROFILE_DIV=1
}

scenario_s2() {
  SC_DESC="GET of a 32 KiB JSON with Accept-Encoding: gzip, compressed by the proxy (level 5; HAProxy: libslz), 64 connections"
  SC_PATH=/big.json
  SC_CONNS=64
  SC_WRK_ARGS=(-H "Accept-Encoding: gzip")
  SC_H2LOAD_ARGS=(-H "Accept-Encoding: gzip")
  SC_CURL_ARGS=(-H "Accept-Encoding: gzip")
  SC_EXPECT_BYTES=$BIG_BYTES
  SC_EXPECT_ENC=gzip
  # ~10x slower per request than s1: fewer requests keep the fixed-count profile short.
  SC_PROFILE_DIV=4
  SC_BASE=s5
}

scenario_s3() {
  SC_DESC="POST of a 4 KiB JSON body (Content-Length), ${BODY_BYTES}-byte JSON answer, 64 connections"
  SC_PATH=/post
  SC_CONNS=64
  SC_WRK_ARGS=(-s "$WORK/post.lua")
  SC_H2LOAD_ARGS=(-d "$WORK/post.json" -H "Content-Type: application/json")
  SC_CURL_ARGS=(-X POST -H "Content-Type: application/json" --data-binary "@$WORK/post.json")
  SC_EXPECT_BYTES=$BODY_BYTES
  SC_EXPECT_ENC=""
  SC_PROFILE_DIV=1
}

scenario_s4() {
  SC_DESC="GET of the ${BODY_BYTES}-byte JSON over 1,000 keep-alive connections (wrk -t1 -c1000)"
  SC_PATH=/json
  SC_CONNS=1000
  SC_WRK_ARGS=()
  SC_H2LOAD_ARGS=()
  SC_CURL_ARGS=()
  SC_EXPECT_BYTES=$BODY_BYTES
  SC_EXPECT_ENC=""
  SC_PROFILE_DIV=1
}

# s5-s8: the 32 KiB JSON of s2, without compression (the base of the ratios), then with
# `Accept-Encoding: br, gzip` uncached and cached, and gzip-only cached. nginx (no brotli module
# in Debian) and HAProxy answer gzip where the gateway answers br; the report shows each one's
# bytes on the wire. Cached: the gateway keeps the compressed variant (a hit costs no
# compression); nginx proxy_cache and the HAProxy cache keep the origin's bytes and compress
# every hit.
scenario_s5() {
  SC_DESC="GET of the 32 KiB JSON without Accept-Encoding (no compression, uncached): the base of the s2/s6-s8 ratios"
  SC_PATH=/big.json
  SC_CONNS=64
  SC_WRK_ARGS=()
  SC_H2LOAD_ARGS=()
  SC_CURL_ARGS=()
  SC_EXPECT_BYTES=$BIG_BYTES
  SC_EXPECT_ENC=-
  SC_PROFILE_DIV=4
}

scenario_s6() {
  SC_DESC="GET of the 32 KiB JSON with Accept-Encoding: br, gzip, uncached (gateway: br quality 4; nginx, HAProxy: gzip)"
  SC_PATH=/big.json
  SC_CONNS=64
  SC_WRK_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_H2LOAD_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_CURL_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_EXPECT_BYTES=$BIG_BYTES
  SC_EXPECT_ENC=gzip
  SC_EXPECT_ENC_BY=([gateway]=br)
  SC_PROFILE_DIV=4
  SC_BASE=s5
}

scenario_s7() {
  SC_DESC="s6 on a cached path (gateway cache rule; nginx proxy_cache; HAProxy cache): every timed request is a hit"
  SC_PATH=/cached/big.json
  SC_CONNS=64
  SC_WRK_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_H2LOAD_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_CURL_ARGS=(-H "Accept-Encoding: br, gzip")
  SC_EXPECT_BYTES=$BIG_BYTES
  SC_EXPECT_ENC=gzip
  SC_EXPECT_ENC_BY=([gateway]=br)
  SC_PROFILE_DIV=4
  SC_BASE=s5
}

scenario_s8() {
  SC_DESC="GET of the 32 KiB JSON with Accept-Encoding: gzip on the cached path (gzip level 5 everywhere; HAProxy: libslz)"
  SC_PATH=/cached/big.json
  SC_CONNS=64
  SC_WRK_ARGS=(-H "Accept-Encoding: gzip")
  SC_H2LOAD_ARGS=(-H "Accept-Encoding: gzip")
  SC_CURL_ARGS=(-H "Accept-Encoding: gzip")
  SC_EXPECT_BYTES=$BIG_BYTES
  SC_EXPECT_ENC=gzip
  SC_PROFILE_DIV=4
  SC_BASE=s5
}

# Resets the optional SC_* settings, then runs scenario_<name>.
loadScenario() {
  SC_EXPECT_ENC_BY=()
  SC_PROXIES=""
  SC_BASE=""
  "scenario_$1"
}

# rl: the gateway alone, without (gateway) and with (gateway_rl) a rate limit on /json whose
# limit never triggers, so each request of gateway_rl makes one EVALSHA round trip to a local
# redis-server (pinned to BENCH_RL_REDIS_CPU, default the client core). SC_PROXIES replaces
# BENCH_PROXIES for this scenario; ratelimit.py prints the req/s ratio (target >= 0.85).
scenario_rl() {
  SC_DESC="s1 (GET of the ${BODY_BYTES}-byte JSON, 64 connections) through the gateway with one never-triggering ${RL_ALGORITHM} Redis rate limit on the path (gateway_rl) vs without (gateway)"
  SC_PATH=/json
  SC_CONNS=64
  SC_WRK_ARGS=()
  SC_H2LOAD_ARGS=()
  SC_CURL_ARGS=()
  SC_EXPECT_BYTES=$BODY_BYTES
  SC_EXPECT_ENC=""
  SC_PROFILE_DIV=1
  SC_PROXIES="gateway gateway_rl"
}

# Starts the redis-server and the rate-limited gateway of scenario rl.
startRateLimitBench() {
  local p rpid
  [[ " $PROXIES " == *" gateway "* ]] || die "scenario rl compares with the plain gateway: keep gateway in BENCH_PROXIES"
  command -v redis-server >/dev/null || die "scenario rl needs redis-server (apt-get install redis-server)"
  for p in "$RL_REDIS_PORT" "$RL_GATEWAY_PORT" "$RL_GATEWAY_ADMIN_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then
      die "port $p (scenario rl) is in use (set BENCH_PORT_BASE to another free range)"
    fi
  done
  mkdir -p "$WORK/redis"
  startPinned "$RL_REDIS_CPU" redis redis-server --port "$RL_REDIS_PORT" --bind 127.0.0.1 \
    --save "" --appendonly no --dir "$WORK/redis" --daemonize no
  rpid=$LAST_PID
  for _ in $(seq 50); do
    [ "$(redis-cli -p "$RL_REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$rpid" 2>/dev/null || die "redis-server exited during startup (output: $WORK/redis.out)"
    sleep 0.1
  done
  PORT_OF[gateway_rl]=$RL_GATEWAY_PORT
  startProxy gateway_rl
  # The rule must really be in force, with Redis (not the in-process fallback) deciding.
  for _ in $(seq 50); do
    curl -fsS --max-time 1 "http://127.0.0.1:$RL_GATEWAY_ADMIN_PORT/readyz" 2>/dev/null | grep -q '"redis":"ok"' && break
    sleep 0.1
  done
  curl -fsS --max-time 1 "http://127.0.0.1:$RL_GATEWAY_ADMIN_PORT/readyz" 2>/dev/null | grep -q '"redis":"ok"' ||
    die "gateway_rl does not report Redis ok on /readyz (output: $WORK/gateway_rl.out)"
  curl -sS -o /dev/null -D - --max-time 2 "http://127.0.0.1:$RL_GATEWAY_PORT/json" | grep -qi '^ratelimit-limit:' ||
    die "gateway_rl answers /json without RateLimit-Limit: the rule is not in force (config: $WORK/gateway_rl.yaml)"
  RL_PROXY=gateway_rl
  log "gateway_rl up on 127.0.0.1:$RL_GATEWAY_PORT (pid ${PID_OF[gateway_rl]}, CPU $PROXY_CPU; redis-server :$RL_REDIS_PORT on CPU $RL_REDIS_CPU, $RL_ALGORITHM)"
}

# trace: the gateway alone, with tracing off (gateway, the template's setting), sampling 10 %
# (gateway_trace10) and every request (gateway_trace100); the tracing ones export OTLP/HTTP JSON
# to a local sink (bench/tracing.py sink, pinned to BENCH_TRACE_SINK_CPU, default the client
# core). tracing.py prints the req/s and CPU/req ratios to tracing off (target at 0.1: >= 0.95).
scenario_trace() {
  SC_DESC="s1 (GET of the ${BODY_BYTES}-byte JSON, 64 connections) through the gateway with tracing off (gateway), sample_ratio 0.1 (gateway_trace10) and 1.0 (gateway_trace100), spans exported over OTLP/HTTP to a local sink"
  SC_PATH=/json
  SC_CONNS=64
  SC_WRK_ARGS=()
  SC_H2LOAD_ARGS=()
  SC_CURL_ARGS=()
  SC_EXPECT_BYTES=$BODY_BYTES
  SC_EXPECT_ENC=""
  SC_PROFILE_DIV=1
  SC_PROXIES="gateway gateway_trace10 gateway_trace100"
}

# One tracing gateway of scenario trace: name port admin_port ratio.
startTraceGateway() {
  local name=$1 port=$2 admin=$3 ratio=$4
  render "$BENCH_DIR/conf/gateway.yaml.in" "$WORK/$name.base.yaml" \
    PORT="$port" ADMIN_PORT="$admin" ORIGIN_PORT="$ORIGIN_PORT"
  "$PY" "$BENCH_DIR/tracing.py" config "$WORK/$name.base.yaml" "$WORK/$name.yaml" "$ratio" \
    "http://127.0.0.1:$TRACE_SINK_PORT/v1/traces/${name#gateway_}" || die "could not write the $name config"
  startPinned "$PROXY_CPU" "$name" "$GATEWAY_BIN" --config "$WORK/$name.yaml"
  PID_OF[$name]=$LAST_PID
  PORT_OF[$name]=$port
  waitHttp "http://127.0.0.1:$port/" 15 "$LAST_PID" "$name"
  TRACE_PROXIES+="$name "
  log "$name up on 127.0.0.1:$port (pid $LAST_PID, CPU $PROXY_CPU, sample_ratio $ratio)"
}

# Starts the OTLP sink and the tracing gateways of scenario trace.
startTraceBench() {
  local p spid
  [[ " $PROXIES " == *" gateway "* ]] || die "scenario trace compares with the plain gateway: keep gateway in BENCH_PROXIES"
  for p in "$TRACE_SINK_PORT" "$TRACE10_PORT" "$TRACE10_ADMIN_PORT" "$TRACE100_PORT" "$TRACE100_ADMIN_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then
      die "port $p (scenario trace) is in use (set BENCH_PORT_BASE to another free range)"
    fi
  done
  startPinned "$TRACE_SINK_CPU" otlp-sink "$PY" "$BENCH_DIR/tracing.py" sink "$TRACE_SINK_PORT"
  spid=$LAST_PID
  waitHttp "http://127.0.0.1:$TRACE_SINK_PORT/stats" 10 "$spid" otlp-sink
  startTraceGateway gateway_trace10 "$TRACE10_PORT" "$TRACE10_ADMIN_PORT" 0.1
  startTraceGateway gateway_trace100 "$TRACE100_PORT" "$TRACE100_ADMIN_PORT" 1.0
  # Spans must really reach the sink (exporter running, endpoint right): one batch within ~1 s.
  for _ in $(seq 5); do curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$TRACE100_PORT/json" || true; done
  for _ in $(seq 30); do
    curl -fsS --max-time 1 "http://127.0.0.1:$TRACE_SINK_PORT/stats" 2>/dev/null | grep -q '"/v1/traces/trace100"' && break
    sleep 0.1
  done
  curl -fsS --max-time 1 "http://127.0.0.1:$TRACE_SINK_PORT/stats" 2>/dev/null | grep -q '"/v1/traces/trace100"' ||
    die "gateway_trace100 exported no span to the sink within 3s (output: $WORK/gateway_trace100.out)"
}

# One request through a port with the scenario's shape; prints "status wire_bytes encoding decoded_bytes".
probe() {
  local port=$1 out="$WORK/probe.body" meta code size enc decoded
  meta=$(curl -s -o "$out" --max-time 5 -w '%{http_code} %{size_download} %header{content-encoding}' \
    "${SC_CURL_ARGS[@]}" "http://127.0.0.1:$port$SC_PATH" || true)
  read -r code size enc <<<"$meta"
  if [ "${enc:-}" = gzip ]; then
    decoded=$(gzip -dc "$out" 2>/dev/null | wc -c)
  elif [ "${enc:-}" = br ]; then
    decoded=$(brotli -dc "$out" 2>/dev/null | wc -c)
  else
    decoded=$(wc -c <"$out")
  fi
  echo "${code:-000} ${size:-0} ${enc:--} $decoded"
}

checkScenario() { # scenario
  local sc=$1 px code size enc decoded ok line want
  read -r code size enc decoded <<<"$(probe "$ORIGIN_PORT")"
  if [ "$code" != 200 ] || [ "$decoded" != "$SC_EXPECT_BYTES" ]; then
    die "origin check failed for $sc: status $code, $decoded bytes (want 200, $SC_EXPECT_BYTES)"
  fi
  for px in ${SC_PROXIES:-$PROXIES}; do
    read -r code size enc decoded <<<"$(probe "${PORT_OF[$px]}")"
    want=${SC_EXPECT_ENC_BY[$px]:-$SC_EXPECT_ENC}
    ok=ok
    if [ "$code" != 200 ] || [ "$decoded" != "$SC_EXPECT_BYTES" ] ||
      { [ -n "$want" ] && [ "$enc" != "$want" ]; }; then
      ok="CHECK FAILED (want 200, ${SC_EXPECT_BYTES} bytes decoded${want:+, encoding $want})"
      log "warning: $sc $px: status $code, $decoded bytes decoded, encoding $enc: $ok"
    fi
    line="$sc $px: $code, $size bytes, encoding $enc, $decoded bytes decoded: $ok"
    echo "$line" >>"$WORK/checks.txt"
    printf '%s\t%s\t%s\n' "$sc" "$px" "$([ "$ok" = ok ] && echo ok || echo failed)" >>"$WORK/checks.tsv"
    printf '%s\t%s\t%s\t%s\n' "$sc" "$px" "$size" "$enc" >>"$WORK/wire.tsv"
  done
}

timedRun() { # scenario proxy round
  local sc=$1 px=$2 rd=$3 url out tf p0 p1 o0 o1 t0 t1 pc0 cc0 pc1 cc1
  url="http://127.0.0.1:${PORT_OF[$px]}$SC_PATH"
  out="$WORK/wrk.$sc.$px.$rd.txt"
  tf="$WORK/wrk.$sc.$px.$rd.time"
  pinned "$CLIENT_CPU" wrk -t1 -c"$SC_CONNS" -d"${WARMUP}s" "${SC_WRK_ARGS[@]}" "$url" >/dev/null 2>&1 || true
  p0=$(treeCpuNs "${PID_OF[$px]}")
  o0=$(treeCpuNs "$ORIGIN_PID")
  read -r pc0 cc0 <<<"$(coreBusy)"
  t0=$(date +%s%N)
  { time pinned "$CLIENT_CPU" wrk -t1 -c"$SC_CONNS" -d"${DURATION}s" --latency \
    "${SC_WRK_ARGS[@]}" "$url" >"$out" 2>&1 || true; } 2>"$tf"
  t1=$(date +%s%N)
  p1=$(treeCpuNs "${PID_OF[$px]}")
  o1=$(treeCpuNs "$ORIGIN_PID")
  read -r pc1 cc1 <<<"$(coreBusy)"
  kill -0 "${PID_OF[$px]}" 2>/dev/null || die "$px died during $sc round $rd (see $WORK/$px.out)"
  "$PY" "$LIB" run-row scenario="$sc" proxy="$px" round="$rd" wrk_out="$out" wrk_time="$tf" \
    wall_ns=$((t1 - t0)) proxy_ns=$((p1 - p0)) origin_ns=$((o1 - o0)) \
    proxy_core_jiffies=$((pc1 - pc0)) client_core_jiffies=$((cc1 - cc0)) clk_tck="$(getconf CLK_TCK)" \
    >>"$WORK/runs.tsv"
}

# ---------------------------------------------------------------- fixed-count profile

h2loadCount() { # file: prints requests that succeeded
  awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^succeeded/) print $i }' "$1"
}

runH2load() { # port requests out
  pinned "$CLIENT_CPU" h2load --h1 -t1 -c"$SC_CONNS" -m1 -n"$2" "${SC_H2LOAD_ARGS[@]}" \
    "http://127.0.0.1:$1$SC_PATH" >"$3" 2>&1 || true
}

# syscalls/request: perf counting the raw_syscalls:sys_enter tracepoint on the
# proxy's threads (cheap), or strace -c -f when perf cannot.
profileSyscalls() { # scenario proxy ; sets PROF_SYS (syscalls/request, or empty)
  local sc=$1 px=$2 pids out calls done_ pp
  PROF_SYS=""
  pids=$(treePids "${PID_OF[$px]}" | paste -sd,)
  out="$WORK/prof.$sc.$px"
  runH2load "${PORT_OF[$px]}" 1000 "$out.warm"
  if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$out.perf" &
    pp=$!
    sleep 0.3
    runH2load "${PORT_OF[$px]}" "$((PROFILE_REQUESTS / SC_PROFILE_DIV))" "$out.h2"
    kill -INT "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    calls=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$out.perf" 2>/dev/null || true)
  else
    local args=() p
    for p in ${pids//,/ }; do args+=(-p "$p"); done
    strace -c -f -o "$out.strace" "${args[@]}" &
    pp=$!
    sleep 0.5
    runH2load "${PORT_OF[$px]}" "$((PROFILE_REQUESTS / SC_PROFILE_DIV))" "$out.h2"
    kill -INT "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    calls=$(awk '$NF == "total" { print $(NF - 2) }' "$out.strace" 2>/dev/null || true)
  fi
  done_=$(h2loadCount "$out.h2" || true)
  if [ -n "$calls" ] && [ -n "$done_" ] && [ "$done_" -gt 0 ]; then
    PROF_SYS=$(awk -v c="$calls" -v n="$done_" 'BEGIN { printf "%.2f", c / n }')
  fi
}

# instructions/request: the proxy started again under callgrind, counters zeroed
# after a warm-up, then a fixed number of requests.
profileCallgrind() { # scenario proxy ; sets PROF_IR (instructions/request, or empty)
  local sc=$1 px=$2 port=${CG_PORT_OF[$2]} cmd pid out dump ir done_
  PROF_IR=""
  out="$WORK/cg.$sc.$px"
  mapfile -t cmd < <(proxyCommand "$px" "$port" cg)
  startPinned "$PROXY_CPU" "cg-$px" valgrind --tool=callgrind --callgrind-out-file="$out.%p.out" "${cmd[@]}"
  pid=$LAST_PID
  if ! waitHttp "http://127.0.0.1:$port/" 60 "$pid" "cg-$px" soft; then
    stopPid "$pid"
    return 0
  fi
  runH2load "$port" 500 "$out.warm"
  callgrind_control -z "$pid" >/dev/null 2>&1 || true
  runH2load "$port" "$CALLGRIND_REQUESTS" "$out.h2"
  callgrind_control -d "$pid" >/dev/null 2>&1 || true
  stopPid "$pid"
  done_=$(h2loadCount "$out.h2" || true)
  # The dump taken by `-d` is the one with the highest sequence number.
  dump=$({ ls -1v "$out.$pid.out".* 2>/dev/null || true; } | tail -n 1)
  if [ -n "$dump" ] && [ -n "$done_" ] && [ "$done_" -gt 0 ]; then
    ir=$(awk '/^(totals|summary):/ { v = $2 } END { print v }' "$dump" || true)
    if [ -n "$ir" ]; then
      PROF_IR=$(awk -v c="$ir" -v n="$done_" 'BEGIN { printf "%.0f", c / n }')
    fi
  fi
}

# ---------------------------------------------------------------- main

checkTools
checkPorts
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d /tmp/gw-bench.XXXXXX)
# nginx workers drop to `nobody` when started as root: they must read the files here.
chmod 755 "$WORK"
mkdir -p "$RESULTS_DIR"
"$PY" "$LIB" run-header >"$WORK/runs.tsv"
printf 'scenario\tproxy\tsyscalls_per_req\tinstr_per_req\n' >"$WORK/profile.tsv"
: >"$WORK/checks.txt"
: >"$WORK/checks.tsv"
: >"$WORK/scenarios.tsv"
: >"$WORK/wire.tsv"
: >"$WORK/bases.tsv"

log "work dir $WORK; proxies: $PROXIES; scenarios: $SCENARIOS; $ROUNDS rounds x ${DURATION}s (+${WARMUP}s warm-up)"
startOrigin
for px in $PROXIES; do
  startProxy "$px"
  log "$px up on 127.0.0.1:${PORT_OF[$px]} (pid ${PID_OF[$px]}, CPU $PROXY_CPU)"
done
if [[ " $SCENARIOS " == *" rl "* ]]; then
  startRateLimitBench
fi
if [[ " $SCENARIOS " == *" trace "* ]]; then
  startTraceBench
fi

for sc in $SCENARIOS; do
  declare -F "scenario_$sc" >/dev/null || die "unknown scenario '$sc' (have: $(declare -F | awk '/scenario_/ { sub("scenario_", "", $3); printf "%s ", $3 }'))"
  loadScenario "$sc"
  printf '%s\t%s\n' "$sc" "$SC_DESC" >>"$WORK/scenarios.tsv"
  [ -z "$SC_BASE" ] || printf '%s\t%s\n' "$sc" "$SC_BASE" >>"$WORK/bases.tsv"
  log "scenario $sc: $SC_DESC"
  checkScenario "$sc"
  for ((rd = 1; rd <= ROUNDS; rd++)); do
    for px in ${SC_PROXIES:-$PROXIES}; do
      timedRun "$sc" "$px" "$rd"
      tail -n 1 "$WORK/runs.tsv" | awk -F'\t' '{
        wall = $9; util = $10 / wall * 100; cutil = ($11 + $12) / wall * 100
        printf "  %-3s %-8s round %d: %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  proxy CPU %6.1f us/req (%3.0f%% of wall)  wrk+origin %3.0f%%  errors %d  -> %s-bound\n",
          $1, $2, $3, $5, $6, $7, ($4 > 0 ? $10 * 1e6 / $4 : 0), util, cutil, $8,
          (util >= 90 && cutil >= 90) ? "both" : (util >= 90 ? "proxy" : (cutil >= 90 ? "client" : "neither"))
      }' >&2
    done
  done
done

PROFILE_DESC=""
if [ "$PROFILE" = 1 ] || [ "$CALLGRIND" = 1 ]; then
  for sc in $SCENARIOS; do
    loadScenario "$sc"
    for px in ${SC_PROXIES:-$PROXIES}; do
      PROF_SYS=""
      PROF_IR=""
      if [ "$PROFILE" = 1 ]; then
        profileSyscalls "$sc" "$px"
      fi
      if [ "$CALLGRIND" = 1 ] && [[ " $CALLGRIND_SCENARIOS " == *" $sc "* ]]; then
        log "callgrind: $sc $px ($CALLGRIND_REQUESTS requests)"
        profileCallgrind "$sc" "$px"
      fi
      log "profile $sc $px: syscalls/req ${PROF_SYS:-n/a}, instructions/req ${PROF_IR:-n/a}"
      printf '%s\t%s\t%s\t%s\n' "$sc" "$px" "$PROF_SYS" "$PROF_IR" >>"$WORK/profile.tsv"
    done
  done
  PROFILE_DESC="h2load --h1 -t1 with the scenario's connection count, after a short warm-up."
  [ "$PROFILE" = 1 ] && PROFILE_DESC+=" syscalls/req: $PROFILE_REQUESTS requests, counting the raw_syscalls:sys_enter tracepoint with \`perf stat -p\` on every thread of the proxy (strace -c -f if perf is unusable)."
  [ "$CALLGRIND" = 1 ] && PROFILE_DESC+=" instr/req: $CALLGRIND_REQUESTS requests to a second instance of the proxy run under \`valgrind --tool=callgrind\` (counters zeroed after 500 warm-up requests; nginx with master_process off), scenarios: $CALLGRIND_SCENARIOS."
fi

# ---------------------------------------------------------------- report

gwVersion="n/a"
if [[ " $PROXIES " == *" gateway "* ]]; then
  gwVersion="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  if [ -n "$(git -C "$ROOT" status --porcelain -- gateway common 2>/dev/null)" ]; then
    gwVersion+="+uncommitted"
  fi
fi
envs=""
for v in $(compgen -e | grep -E '^(BENCH_[A-Z_]+|GATEWAY_BIN)$' | sort || true); do
  envs+="$v=$(printf '%q' "${!v}") "
done
export META_DATE META_NPROC META_CPU META_KERNEL META_COMMAND META_VERSIONS META_NICE=$NICE
META_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
META_NPROC=$(nproc)
META_CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
META_KERNEL=$(uname -srm)
META_COMMAND="${envs}bench/run.sh${*:+ $*}"
if [ -n "${MAKELEVEL:-}" ]; then
  META_COMMAND="${envs}make bench (runs bench/run.sh${*:+ $*})"
fi
META_VERSIONS="gateway $gwVersion ($(basename "$(dirname "$GATEWAY_BIN")")/gateway), $(nginx -v 2>&1 | sed 's/^nginx version: //'), HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'), $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print "wrk", $2 }')"

# shellcheck disable=SC2086 # $PROXIES is split into one argument per proxy on purpose
"$PY" - "$WORK" "$DURATION" "$ROUNDS" "$WARMUP" "$PROXY_CPU" "$CLIENT_CPU" "$PROFILE_DESC" $PROXIES $RL_PROXY >"$WORK/meta.json" <<'EOF'
import json, os, sys
work, duration, rounds, warmup, pcpu, ccpu, pdesc, *proxies = sys.argv[1:]
descs = {}
for line in open(os.path.join(work, "scenarios.tsv")):
    if line.strip():
        k, v = line.rstrip("\n").split("\t", 1)
        descs[k] = v
wire = {}
for line in open(os.path.join(work, "wire.tsv")):
    if line.strip():
        sc, px, size, enc = line.rstrip("\n").split("\t")
        wire.setdefault(sc, {})[px] = [size, enc]
print(json.dumps({
    "date": os.environ["META_DATE"], "nproc": os.environ["META_NPROC"],
    "cpu_model": os.environ["META_CPU"], "kernel": os.environ["META_KERNEL"],
    "command": os.environ["META_COMMAND"], "versions": os.environ["META_VERSIONS"],
    "duration": duration, "rounds": rounds, "warmup": warmup,
    "proxy_cpu": pcpu, "client_cpu": ccpu, "proxies": proxies,
    "scenario_desc": descs, "profile_desc": pdesc,
    "nice": os.environ["META_NICE"],
    "failed_checks": [l.split("\t")[:2] for l in open(os.path.join(work, "checks.tsv"))
                      if l.rstrip("\n").endswith("\tfailed")],
    "checks": [l.strip() for l in open(os.path.join(work, "checks.txt")) if l.strip()],
    # scenario -> proxy -> [bytes on the wire, Content-Encoding] from the checks
    "wire": wire,
    "bases": dict(l.rstrip("\n").split("\t") for l in open(os.path.join(work, "bases.tsv")) if l.strip()),
}, indent=1))
EOF

stamp=$(date -u +%Y%m%dT%H%M%SZ)
"$PY" "$LIB" report "$WORK/runs.tsv" "$WORK/profile.tsv" "$WORK/meta.json" >"$RESULTS_DIR/latest.md"
if [ -n "$RL_PROXY" ]; then
  "$PY" "$BENCH_DIR/ratelimit.py" report "$WORK/runs.tsv" rl >>"$RESULTS_DIR/latest.md"
fi
if [ -n "$TRACE_PROXIES" ]; then
  sleep 1.5  # the exporters' last batches (one per second)
  curl -fsS --max-time 2 "http://127.0.0.1:$TRACE_SINK_PORT/stats" >"$WORK/trace-sink.json" 2>/dev/null || true
  traceMetrics=()
  for px in $TRACE_PROXIES; do
    [ "$px" = gateway_trace10 ] && admin=$TRACE10_ADMIN_PORT || admin=$TRACE100_ADMIN_PORT
    curl -fsS --max-time 2 "http://127.0.0.1:$admin/metrics" >"$WORK/$px.metrics" 2>/dev/null || true
    traceMetrics+=("$px=$WORK/$px.metrics")
  done
  "$PY" "$BENCH_DIR/tracing.py" report "$WORK/runs.tsv" trace "$WORK/trace-sink.json" "${traceMetrics[@]}" \
    >>"$RESULTS_DIR/latest.md"
fi
cp "$RESULTS_DIR/latest.md" "$RESULTS_DIR/$stamp.md"
cp "$WORK/runs.tsv" "$RESULTS_DIR/$stamp.runs.tsv"
echo
cat "$RESULTS_DIR/latest.md"
log "written $RESULTS_DIR/latest.md (and $stamp.md, $stamp.runs.tsv); total $(($(date +%s) - T_START))s"
