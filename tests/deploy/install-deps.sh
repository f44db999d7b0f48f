#!/usr/bin/env bash
# What the offline checks of deploy/ need, installed only when missing (idempotent;
# meant for `make deps`):
#   - kubectl, to render the kustomize bases. The machine image ships one (1.32);
#     otherwise Debian's kubernetes-client (1.20, whose older kustomize the checks
#     also support). Installed only when no kubectl exists: both own /usr/bin/kubectl.
#   - node + npm, to run deploy/tools/validate-manifests.mjs (Debian's nodejs/npm
#     when none is installed; a nodesource nodejs already bundles npm).
#   - deploy/node_modules from deploy/package-lock.json (npm ci), when missing or
#     older than the lockfile.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v kubectl >/dev/null 2>&1; then
  scripts/install-deps.sh kubernetes-client
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  scripts/install-deps.sh nodejs npm
fi
stamp=deploy/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ deploy/package-lock.json -nt "$stamp" ]; then
  echo "install-deps: npm ci --prefix deploy"
  npm ci --prefix deploy --no-audit --no-fund --loglevel=error
fi
# The OTLP JSON schema check of the trace tests (tests/otlp).
tests/otlp/install-deps.sh
