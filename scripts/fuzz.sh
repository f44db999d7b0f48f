#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan) in build-fuzz and runs each for
# a bounded time. Exits non-zero when a target crashes, reports a sanitizer error or breaks one of
# its properties, including on the saved regression inputs.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#   scripts/fuzz.sh 0 [TARGET...]                        (replay the regressions only)
#
# Per target, in this order:
#   1. every file in tests/fuzz/regressions/<target>/ is replayed once (past crashes stay fixed);
#   2. libFuzzer runs for SECONDS_PER_TARGET on the seeds in tests/fuzz/corpus/<target>/ plus the
#      corpus it grew on earlier runs (build-fuzz/corpus/<target>/, kept between runs); skipped
#      when SECONDS_PER_TARGET is 0 (libFuzzer would take -max_total_time=0 as "no limit").
# Targets run FUZZ_JOBS at a time (default: the CPU count). A crash input is left in
# build-fuzz/artifacts/<target>/; copy it to tests/fuzz/regressions/<target>/ when reporting it.
# The table at the end (also in build-fuzz/fuzz-summary.txt) gives executions, execs/s and
# coverage per target.
#
# Environment: FUZZ_BUILD_DIR (build-fuzz), FUZZ_JOBS, CC/CXX (clang/clang++),
# FUZZ_EXTRA_ARGS (more libFuzzer flags), FUZZ_IGNORE (ids of reported, unfixed bugs the fuzzing
# may look past; see tests/fuzz/README.md; the regression replay ignores it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SECONDS_PER_TARGET="${1:-60}"
shift || true
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$SECONDS_PER_TARGET'" >&2
  exit 2
fi
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${FUZZ_JOBS:-$(nproc)}"
export CC="${CC:-clang}" CXX="${CXX:-clang++}"
start=$(date +%s)

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

# Configure once (again when an older build directory lacks -DFUZZ=ON).
# -O1 and line tables only: half the compile time of -O2 -g, and still symbolized stack traces.
if ! grep -qx 'FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUZZ=ON -UCMAKE_PROJECT_INCLUDE \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >/dev/null
fi
echo "== building fuzz targets in $BUILD"
mkdir -p "$BUILD"
if ! cmake --build "$BUILD" --target fuzz_all -j "$(nproc)" >"$BUILD/fuzz-build.log" 2>&1; then
  grep -E "error|Error" "$BUILD/fuzz-build.log" | head -40 >&2
  echo "fuzz.sh: build failed (full log: $BUILD/fuzz-build.log)" >&2
  exit 2
fi
grep -E "warning|Linking" "$BUILD/fuzz-build.log" || true
build_done=$(date +%s)

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for bin in "$BUILD"/tests/fuzz/fuzz_*; do
    [[ -x "$bin" && ! -d "$bin" ]] && targets+=("$(basename "$bin" | sed 's/^fuzz_//')")
  done
fi

dict_for() {
  case "$1" in
    http_parser|http_response_parser|gateway_request_path) echo "$REPO/tests/fuzz/dicts/http.dict" ;;
    config_loader) echo "$REPO/tests/fuzz/dicts/yaml.dict" ;;
    accept_encoding|cache_headers|cors_preflight|traceparent) echo "$REPO/tests/fuzz/dicts/headers.dict" ;;
  esac
}

max_len_for() {
  case "$1" in
    config_loader) echo 8192 ;;
    gateway_request_path) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

logs="$BUILD/fuzz-logs"
mkdir -p "$logs"

run_target() {
  local t=$1
  local bin="$BUILD/tests/fuzz/fuzz_$t"
  local log="$logs/$t.log"
  local status="$logs/$t.status"
  : >"$log"
  if [[ ! -x "$bin" ]]; then
    echo "missing" >"$status"
    return
  fi
  # Regressions replay strictly (FUZZ_IGNORE unset): a reported bug fails here until it is fixed,
  # while the fuzzing below may look past it.
  local regressions="$REPO/tests/fuzz/regressions/$t"
  local regression_failed=0
  if compgen -G "$regressions/*" >/dev/null; then
    local input
    for input in "$regressions"/*; do
      echo "REGRESSION: $input" >>"$log"
      if ! env -u FUZZ_IGNORE "$bin" -runs=1 -timeout=10 -rss_limit_mb=2048 "$input" >>"$log" 2>&1; then
        echo "REGRESSION FAILED: $input" >>"$log"
        regression_failed=1
      fi
    done
  fi
  if [[ "$SECONDS_PER_TARGET" -eq 0 ]]; then
    if [[ $regression_failed -ne 0 ]]; then echo "regression" >"$status"; else echo "ok" >"$status"; fi
    return
  fi
  local corpus="$BUILD/corpus/$t"
  local artifacts="$BUILD/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  local seeds="$REPO/tests/fuzz/corpus/$t"
  local args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048
              -max_len="$(max_len_for "$t")" -print_final_stats=1
              -artifact_prefix="$artifacts/")
  local dict
  dict=$(dict_for "$t")
  [[ -n "$dict" && -f "$dict" ]] && args+=(-dict="$dict")
  # shellcheck disable=SC2086
  local result=ok
  timeout $((SECONDS_PER_TARGET + 120)) "$bin" "${args[@]}" ${FUZZ_EXTRA_ARGS:-} "$corpus" \
    $( [[ -d "$seeds" ]] && echo "$seeds" ) >>"$log" 2>&1 || result=$([[ $? -eq 124 ]] && echo hung || echo crash)
  if [[ $regression_failed -ne 0 ]]; then
    result="regression+$result"
  fi
  echo "$result" >"$status"
}

if [[ "$SECONDS_PER_TARGET" -eq 0 ]]; then
  echo "== replaying the regressions of ${#targets[@]} targets, $JOBS at a time"
else
  echo "== running ${#targets[@]} targets for ${SECONDS_PER_TARGET}s each, $JOBS at a time"
fi
running=0
for t in "${targets[@]}"; do
  run_target "$t" &
  running=$((running + 1))
  if [[ $running -ge $JOBS ]]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
summary="$BUILD/fuzz-summary.txt"
{
  printf "%-22s %-10s %12s %9s %7s %7s %7s\n" target result execs "execs/s" cov ft corpus
  for t in "${targets[@]}"; do
    log="$logs/$t.log"
    result=$(cat "$logs/$t.status" 2>/dev/null || echo "?")
    execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
    [[ -z "$execs" ]] && execs=$(grep -oP '^#\K[0-9]+' "$log" | tail -1 || true)
    rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -oP '^#[0-9]+.*\bcov: \K[0-9]+' "$log" | tail -1 || true)
    ft=$(grep -oP '^#[0-9]+.*\bft: \K[0-9]+' "$log" | tail -1 || true)
    corp=$(grep -oP '^#[0-9]+.*\bcorp: \K[0-9]+' "$log" | tail -1 || true)
    printf "%-22s %-10s %12s %9s %7s %7s %7s\n" "$t" "$result" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}"
  done
} | tee "$summary"

for t in "${targets[@]}"; do
  result=$(cat "$logs/$t.status" 2>/dev/null || echo "?")
  if [[ "$result" != "ok" ]]; then
    failed=1
    echo
    echo "== $t: $result (log: $logs/$t.log)"
    grep -E "REGRESSION FAILED|ERROR: |property violated|runtime error|SUMMARY|Test unit written" "$logs/$t.log" | head -20 || true
    grep -A12 "property violated" "$logs/$t.log" | head -30 || true
  fi
done
total=$(awk 'NR > 1 && $3 ~ /^[0-9]+$/ { s += $3 } END { print s + 0 }' "$summary")
replayed=0
for t in "${targets[@]}"; do
  n=$(grep -c '^REGRESSION: ' "$logs/$t.log" 2>/dev/null || true)
  replayed=$((replayed + ${n:-0}))
done
echo "fuzz.sh: $replayed regression inputs replayed, $total executions of fuzzing in total;" \
  "build $((build_done - start))s, run $(( $(date +%s) - build_done ))s"
exit $failed
