#!/usr/bin/env bash
# The kind path, for machines that can pull kindest/node: a kind cluster from
# kind-config.yaml, our image loaded into it, and the same e2e suite as on the local cluster.
#
#   hack/kind.sh up       create the cluster (kind v0.29.0, built into the cache if missing)
#   hack/kind.sh load     build our image (hack/image.sh build) and `kind load` it
#   hack/kind.sh test     run tests/e2e against the kind cluster
#   hack/kind.sh all      up + load + test
#   hack/kind.sh down     delete the kind cluster
#
# Needs Docker (or KIND_EXPERIMENTAL_PROVIDER=podman) and a registry that serves
# kindest/node and the Python base image (BASE_IMAGE, default python:3.11-slim-bookworm).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KIND_CLUSTER="${KIND_CLUSTER:-plugin-operator}"
KIND_KUBECONFIG="${KIND_KUBECONFIG:-$CACHE_DIR/kind-$KIND_CLUSTER.kubeconfig}"

kind_bin() {
  if command -v kind >/dev/null && kind version | grep -q "$KIND_VERSION"; then
    command -v kind
  else
    "$HACK_DIR/build-components.sh" kind >/dev/null
    echo "$TOOLS_BIN_DIR/kind"
  fi
}

up() {
  local kind; kind="$(kind_bin)"
  if ! "$kind" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    "$kind" create cluster --name "$KIND_CLUSTER" --config "$REPO_ROOT/kind-config.yaml" --wait 5m
  fi
  mkdir -p "$(dirname "$KIND_KUBECONFIG")"
  "$kind" get kubeconfig --name "$KIND_CLUSTER" > "$KIND_KUBECONFIG"
  echo "$KIND_KUBECONFIG"
}

load() {
  local kind image; kind="$(kind_bin)"
  image="$(BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}" "$HACK_DIR/image.sh" build | tail -1)"
  "$kind" load docker-image --name "$KIND_CLUSTER" "$image"
}

run_tests() {
  [ -s "$KIND_KUBECONFIG" ] || die "no kubeconfig at $KIND_KUBECONFIG; run $0 up"
  cd "$REPO_ROOT"
  PLUGIN_OPERATOR_E2E_KUBECONFIG="$KIND_KUBECONFIG" \
  PLUGIN_OPERATOR_E2E_CONTEXT="kind-$KIND_CLUSTER" \
    .venv/bin/pytest tests/e2e "$@"
}

case "${1:-}" in
  up) up ;;
  load) load ;;
  test) shift; run_tests "$@" ;;
  all) up; load; run_tests ;;
  down) "$(kind_bin)" delete cluster --name "$KIND_CLUSTER" ;;
  *) die "usage: $0 up|load|test|all|down" ;;
esac
