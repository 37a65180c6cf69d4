#!/usr/bin/env bash
# Bring plugin-operator up on this machine and show it working.
#
# Today: a real kube-apiserver on loopback with the CRDs and the examples applied.
# Stop it with: hack/control-plane.sh stop "$CACHE_DIR/up"
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

STATE="$CACHE_DIR/up"
"$HACK_DIR/python-env.sh"
KUBECTL="$("$HACK_DIR/build-components.sh" kubectl | tail -n1)/kubectl"
if ! "$HACK_DIR/control-plane.sh" status "$STATE" >/dev/null 2>&1; then
  "$HACK_DIR/control-plane.sh" stop "$STATE"
  log "starting a kube-apiserver and etcd on loopback"
  "$HACK_DIR/control-plane.sh" start "$STATE" >/dev/null
fi
export KUBECONFIG="$STATE/kubeconfig"
log "installing the CRDs"
"$KUBECTL" apply --server-side -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established --timeout=60s crd --all >/dev/null
log "applying the examples into namespace demo"
"$KUBECTL" create namespace demo --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" apply -n demo -f examples/ >/dev/null
"$KUBECTL" get -n demo plugin-operator
cat <<MSG

The control plane is up. Try:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL explain plugin.spec.source
  $KUBECTL get -n demo plugin-operator
Stop it with: hack/control-plane.sh stop $STATE
MSG
