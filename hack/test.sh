#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks, unit tests, integration tests against a
# real kube-apiserver and real plugin processes, and e2e tests on a real cluster.
#
#   hack/test.sh [PYTEST ARGS...]
#
# The e2e suite runs on the cluster named by PLUGIN_OPERATOR_E2E_KUBECONFIG (or KUBECONFIG);
# without one, this machine's local cluster is brought up (hack/cluster.sh, needs root) and,
# if this script started it, torn down again at the end (KEEP_CLUSTER=1 keeps it).
# Everything it needs is installed or built on the way and cached for the next run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

started=$SECONDS
"$HACK_DIR/python-env.sh"
export PATH="$REPO_ROOT/.venv/bin:$PATH"

log "static checks: ruff, mypy --strict, import contracts"
ruff check operator tests benchmarks
mypy
lint-imports --no-cache >/dev/null || lint-imports --no-cache

given_cluster="${PLUGIN_OPERATOR_E2E_KUBECONFIG:-${KUBECONFIG:-}}"
brought_up=0
if [ -z "$given_cluster" ]; then
  log "system packages for the local cluster and the image"
  "$HACK_DIR/install-deps.sh"
  if ! "$HACK_DIR/cluster.sh" status 2>/dev/null | grep -q '^kubelet  *running'; then
    brought_up=1
  fi
fi
finish() {
  if [ "$brought_up" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "tearing down the local cluster this run started"
    "$HACK_DIR/cluster.sh" down >/dev/null || log "hack/cluster.sh down failed"
  fi
}
trap finish EXIT

log "building the Kubernetes components (cached after the first run)"
"$HACK_DIR/build-components.sh" etcd kube-apiserver kubectl kube-controller-manager \
  kube-scheduler kubelet kube-proxy coredns helm >/dev/null

log "running the tests (the e2e fixtures bring the cluster up and load the image)"
set +e
pytest tests/unit tests/integration tests/e2e "$@"
status=$?
set -e
log "tests finished with exit code $status after $((SECONDS - started)) s"
exit "$status"
