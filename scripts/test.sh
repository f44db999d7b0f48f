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

echo "make test: finished in $(( $(date +%s) - start ))s"
