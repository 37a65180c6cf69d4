#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks, unit tests, integration tests against a
# real kube-apiserver and real plugin processes, and e2e tests on a real cluster.
#
#   hack/test.sh [PYTEST ARGS...]
#
# The e2e suite runs on the cluster named by PLUGIN_OPERATOR_E2E_KUBECONFIG (or KUBECONFIG);
# without one, this machine's local cluster is brought up (hack/cluster.sh, needs root) and,
# if this script started it, torn down again at the end (KEEP_CLUSTER=1 keeps it).
# Everything it needs is installed or built on the way and cached for the next run. Progress
# goes to stderr (long builds as "[n/m] building COMPONENT" and a line every 30 s), and the
# run ends with a table of where the time went, including what the test fixtures built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

started=$SECONDS
steps_init
given_cluster="${PLUGIN_OPERATOR_E2E_KUBECONFIG:-${KUBECONFIG:-}}"
brought_up=0
# shellcheck disable=SC2317 # the EXIT trap runs it
finish() {
  local rc=$?
  [ "$rc" -eq 0 ] || step_end failed
  if [ "$brought_up" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    step_begin "cluster teardown" "tearing down the local cluster this run started"
    "$HACK_DIR/cluster.sh" down >/dev/null || log "hack/cluster.sh down failed"
    step_end
  fi
  steps_summary "$rc"
}
trap finish EXIT

"$HACK_DIR/python-env.sh"
export PATH="$REPO_ROOT/.venv/bin:$PATH"

step_begin "static checks" "static checks: ruff, mypy --strict, import contracts"
ruff check operator tests benchmarks dashboards
mypy
lint-imports --no-cache >/dev/null || lint-imports --no-cache
step_end ok

if [ -z "$given_cluster" ]; then
  step_begin "system packages" "system packages for the local cluster and the image"
  "$HACK_DIR/install-deps.sh"
  step_end
else
  # promtool, for the alerting rules' unit tests; the node packages are the given cluster's.
  "$HACK_DIR/install-deps.sh" prometheus
  if ! "$HACK_DIR/cluster.sh" status 2>/dev/null | grep -q '^kubelet  *running'; then
    brought_up=1
  fi
fi

step_begin "components" "building the Kubernetes components, cached after the first run"
"$HACK_DIR/build-components.sh" etcd kube-apiserver kubectl kube-controller-manager \
  kube-scheduler kubelet kube-proxy coredns helm >/dev/null
step_end

step_begin "tests" "running the tests (the e2e fixtures bring the cluster up and load the image)"
set +e
pytest tests/unit tests/integration tests/e2e "$@"
status=$?
set -e
if [ "$status" -eq 0 ]; then step_end passed; else step_end "failed (exit $status)"; fi
log "tests finished with exit code $status after $((SECONDS - started)) s"
exit "$status"
