#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks, unit tests, and integration tests
# against a real kube-apiserver and real plugin processes.
#
#   hack/test.sh [PYTEST ARGS...]
#
# Everything it needs is built or installed on the way and cached for the next run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

started=$SECONDS
"$HACK_DIR/python-env.sh"
export PATH="$REPO_ROOT/.venv/bin:$PATH"

log "static checks: ruff, mypy --strict, import contracts"
ruff check operator tests
mypy
lint-imports --no-cache >/dev/null || lint-imports --no-cache

log "building the test control plane (cached after the first run)"
"$HACK_DIR/build-components.sh" etcd kube-apiserver kubectl >/dev/null

log "running the tests"
set +e
pytest tests/unit tests/integration "$@"
status=$?
set -e
log "tests finished with exit code $status after $((SECONDS - started)) s"
exit "$status"
