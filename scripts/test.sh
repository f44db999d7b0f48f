#!/usr/bin/env bash
# `make test`: unit tests, then integration tests against real processes and servers
# (PostgreSQL, PgBouncer, Redis and the two binaries, all started on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
start=$(date +%s)

echo "== unit tests"
"$BUILD_DIR/tests/unit_tests"

echo "== integration tests"
SIDECAR_BUILD_DIR="$BUILD_DIR" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
echo "== perf check (callgrind instructions/request vs tests/perf/bounds.yaml)"; SIDECAR_BUILD_DIR="$BUILD_DIR" /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/perf
echo "== soak, 60 s (a fault every 15 s; make soak runs 30 min)"; /usr/bin/python3 scripts/soak.py --seconds 60 --no-plot --build-dir "$BUILD_DIR" --out "$BUILD_DIR/soak-60s"

echo "make test: finished in $(( $(date +%s) - start ))s"
