#!/usr/bin/env bash
# NetworkPolicy enforcement for the local cluster (hack/cluster.sh): kube-router's network
# policy controller alone (no routing, no service proxy, no CNI), as a host process.
#
#   hack/cluster/network-policy.sh up       build kube-router if missing (cached), start it,
#                                           wait until its filter chains are in place
#   hack/cluster/network-policy.sh down     stop it and remove its iptables rules, chains and ipsets
#   hack/cluster/network-policy.sh status
#
# Why kube-router: the bridge CNI enforces nothing. sigs.k8s.io/kube-network-policies needs
# nftables' `queue` expression (CONFIG_NFT_QUEUE), which this machine's kernel lacks;
# kube-router filters with iptables (through the kernel's nft_compat) and ipsets, which it has.
# Pod-to-pod traffic on the bridge passes iptables because br_netfilter is on
# (net.bridge.bridge-nf-call-iptables=1). Its chains are named KUBE-ROUTER-*, KUBE-POD-FW-*,
# KUBE-NWPLCY-* and its ipsets KUBE-*: `hack/cluster.sh down` runs `down` here first.
# Needs root and the ipset tool (installed with apt when missing).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$HACK_DIR/cluster/common.sh"

KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
KUBE_ROUTER="$TOOLS_BIN_DIR/kube-router-$KUBE_ROUTER_VERSION"
PIDFILE="$RUN_DIR/kube-router.pid"
LOG="$LOG_DIR/kube-router.log"

require_root() { [ "$(id -u)" -eq 0 ] || die "$0 needs root (iptables, ipset)"; }

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

ensure_ipset() {
  command -v ipset >/dev/null && return
  log "installing ipset (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ipset >/dev/null ||
    die "could not install ipset: apt-get install ipset"
}

# Built from the Go module proxy into the versioned cache; a cached binary is never rebuilt.
ensure_binary() {
  [ -x "$KUBE_ROUTER" ] && return
  local dir="$CACHE_DIR/build/kube-router-$KUBE_ROUTER_VERSION"
  mkdir -p "$dir" "$TOOLS_BIN_DIR"
  printf 'module plugin-operator.dev/build/kube-router\ngo 1.21\nrequire github.com/cloudnativelabs/kube-router/v2 %s\n' \
    "$KUBE_ROUTER_VERSION" > "$dir/go.mod"
  log "building kube-router $KUBE_ROUTER_VERSION from the Go module proxy (a few minutes, once)"
  # The checksum database does not know this module's tags; the proxy's copy is used as is.
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GONOSUMDB=github.com/cloudnativelabs/kube-router \
    go build -mod=mod -trimpath -ldflags "-s -w" -o "$KUBE_ROUTER.tmp" \
      github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) ||
    die "building kube-router failed"
  mv "$KUBE_ROUTER.tmp" "$KUBE_ROUTER"
}

chains_in_place() { iptables -S FORWARD 2>/dev/null | grep -q -- '-j KUBE-ROUTER-FORWARD'; }

up() {
  require_root
  [ -s "$KUBECONFIG_ADMIN" ] || die "the local cluster is not up: run hack/cluster.sh up first"
  [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ] ||
    die "net.bridge.bridge-nf-call-iptables is not 1: bridged pod traffic would bypass the policies"
  ensure_ipset
  PATH="/usr/local/go/bin:$PATH" ensure_binary
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if ! running_pid >/dev/null; then
    log "starting kube-router's network policy controller (log: $LOG)"
    # The admin kubeconfig: kube-router reads pods, namespaces, nodes and NetworkPolicies.
    setsid "$KUBE_ROUTER" --kubeconfig "$KUBECONFIG_ADMIN" \
      --hostname-override "$(hostname | tr '[:upper:]' '[:lower:]')" \
      --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
      --enable-ipv4=true --enable-ipv6=false --health-port=0 --metrics-port=0 \
      --service-cluster-ip-range "$SERVICE_CIDR" --iptables-sync-period=10s \
      >>"$LOG" 2>&1 < /dev/null 7>&- &
    echo $! > "$PIDFILE"
  fi
  local deadline=$((SECONDS + 60))
  until chains_in_place; do
    running_pid >/dev/null || die "kube-router exited; see $LOG"
    [ "$SECONDS" -lt "$deadline" ] || die "kube-router installed no filter chain within 60s; see $LOG"
    sleep 1
  done
  log "NetworkPolicy is enforced (kube-router $KUBE_ROUTER_VERSION, pid $(running_pid))"
}

# kube-router's own --cleanup-config panics in its service proxy's cleanup (v2.1.0), so its
# rules go here: the jumps from the built-in chains, its chains, then its ipsets (only
# unreferenced sets can be destroyed).
remove_filter_state() {
  local chain rule chains
  for chain in INPUT FORWARD OUTPUT; do
    while rule="$(iptables -S "$chain" 2>/dev/null | grep -m1 -- '-j KUBE-ROUTER-')"; do
      eval "iptables ${rule/-A/-D}" || break
    done
  done
  chains="$(iptables-save -t filter 2>/dev/null |
    sed -n 's/^:\(KUBE-ROUTER-[^ ]*\|KUBE-POD-FW-[^ ]*\|KUBE-NWPLCY-[^ ]*\) .*/\1/p')"
  for chain in $chains; do iptables -F "$chain" 2>/dev/null || true; done
  for chain in $chains; do iptables -X "$chain" 2>/dev/null || true; done
  if command -v ipset >/dev/null; then
    ipset list -n 2>/dev/null | { grep -E '^KUBE-(SRC|DST)-' || true; } |
      while read -r set; do ipset destroy "$set" 2>/dev/null || true; done
  fi
}

down() {
  require_root
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  remove_filter_state
  log "kube-router stopped"
}

status() {
  local pid
  if pid="$(running_pid)"; then echo "kube-router running (pid $pid), log: $LOG"
  else echo "kube-router stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
