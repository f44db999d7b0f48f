#!/usr/bin/env bash
# What tests/otlp/validate-otlp.mjs needs (the OTLP JSON schema check of the trace tests),
# installed only when missing (idempotent; run by `make deps` through tests/deploy/install-deps.sh):
#   - node + npm (Debian's nodejs/npm when none is installed);
#   - tests/otlp/node_modules from tests/otlp/package-lock.json (npm ci, pinned versions with
#     their integrity hashes), when missing or older than the lockfile. Offline afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  scripts/install-deps.sh nodejs npm
fi
stamp=tests/otlp/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ tests/otlp/package-lock.json -nt "$stamp" ]; then
  echo "install-deps: npm ci --prefix tests/otlp"
  npm ci --prefix tests/otlp --no-audit --no-fund --loglevel=error --ignore-scripts
fi
