#!/usr/bin/env bash
# `make deploy-check`: the offline checks of deploy/ on their own (they also run
# in `make test`, as tests/integration/test_deploy_manifests.py): renders both
# kustomize bases, validates every object against the Kubernetes schemas,
# checks the pod's invariants against conf/app.yaml, the Prometheus/OTel
# configs, the Dockerfiles and (when build/ holds the binaries) their
# runtime libraries.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/deploy/install-deps.sh
SIDECAR_BUILD_DIR="${BUILD_DIR:-build}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
  tests/integration/test_deploy_manifests.py "$@"
