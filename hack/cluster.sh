#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, every component a host process.
#
#   hack/cluster.sh up       build what is missing, start what is not running, wait until the
#                            node is Ready and CoreDNS answers; prints the kubeconfig's path
#   hack/cluster.sh down     stop everything `up` started and remove its processes, mounts,
#                            network interfaces, iptables rules and data directories
#   hack/cluster.sh status   what runs, where the kubeconfig and the logs are
#
# Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built from the
# Go module proxy by hack/build-components.sh), Debian's containerd + runc + CNI plugins,
# kubelet, kube-proxy (iptables mode), CoreDNS (a Deployment serving cluster.local only) and
# kube-router's NetworkPolicy controller (hack/cluster/network-policy.sh).
# State: /var/lib/plugin-operator-cluster (logs in its logs/), /run/plugin-operator-cluster.
# Needs root. Run hack/install-deps.sh once before.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/common.sh"

DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
KUBECTL="$K8S_BIN_DIR/kubectl"
# Paths outside STATE_DIR/RUN_DIR that the components create on their own; `down` removes
# those that did not exist before `up` (recorded in $STATE_DIR/created-paths).
# (/var/lib/kubelet/device-plugins and the shims' /run/containerd/s are fixed paths.)
FOREIGN_PATHS=(/var/lib/cni /var/log/containers /etc/cni /var/lib/kubelet /run/containerd
  /usr/libexec/kubernetes)
RULE_COMMENT=plugin-operator-cluster
# Kernel settings the kubelet and kube-proxy change; `down` puts back what `up` found.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)

require_root() { [ "$(id -u)" -eq 0 ] || die "hack/cluster.sh needs root (kubelet, containerd, iptables)"; }

pid_of() {
  local pidfile="$RUN_DIR/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# start_daemon NAME COMMAND...: detached from our terminal and pipes, so callers that
# capture our output (the e2e fixture) are not held open by the daemons.
start_daemon() {
  local name="$1"; shift
  if pid_of "$name" >/dev/null; then return; fi
  log "starting $name (log: $LOG_DIR/$name.log)"
  # fd 7 is the up/down lock: a daemon must not inherit it, or it holds the lock forever.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null 7>&- &
  echo $! > "$RUN_DIR/$name.pid"
}

# wait_until SECONDS WHAT COMMAND...
wait_until() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${seconds}s waiting for $what; logs: $LOG_DIR"
    fi
    sleep 1
  done
}

kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

ensure_binaries() {
  local missing=0 c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$K8S_BIN_DIR/$c" ] || missing=1
  done
  [ -x "$ETCD_BIN_DIR/etcd" ] && [ -x "$TOOLS_BIN_DIR/coredns" ] || missing=1
  [ "$missing" = 0 ] && return
  log "building the missing Kubernetes components (cached afterwards; log: $LOG_DIR/build.log)"
  "$HACK_DIR/build-components.sh" etcd kube-apiserver kube-controller-manager kube-scheduler \
    kubelet kube-proxy kubectl coredns >"$LOG_DIR/build.log" 2>&1 ||
    die "building components failed; see $LOG_DIR/build.log"
}

# The pause (sandbox) and CoreDNS images: static binaries in FROM-scratch images, cached.
ensure_image_archives() {
  local dir="$CACHE_DIR/images" src work
  mkdir -p "$dir"
  if [ ! -s "$dir/pause-3.10.tar" ]; then
    src="$(cd "$CACHE_DIR" && /usr/local/go/bin/go env GOMODCACHE 2>/dev/null || go env GOMODCACHE)"
    src="$src/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
    [ -f "$src" ] || die "pause.c not found at $src; run hack/build-components.sh kubelet first"
    work="$(mktemp -d)"
    gcc -Os -static -DVERSION="3.10" -o "$work/pause" "$src" || die "compiling pause.c failed (apt-get install gcc libc6-dev)"
    strip "$work/pause"
    python3 "$HACK_DIR/cluster/scratch_image.py" "$dir/pause-3.10.tar" "$PAUSE_IMAGE" \
      '["/pause"]' "$work/pause=/pause"
    rm -rf "$work"
  fi
  if [ ! -s "$dir/coredns-$COREDNS_VERSION.tar" ] && [ -x "$TOOLS_BIN_DIR/coredns" ]; then
    python3 "$HACK_DIR/cluster/scratch_image.py" "$dir/coredns-$COREDNS_VERSION.tar" \
      "$COREDNS_IMAGE" '["/coredns"]' "$TOOLS_BIN_DIR/coredns=/coredns"
  fi
}

new_cert() { # NAME SUBJECT [SAN]
  local name="$1" subject="$2" san="${3:-}" ext="$PKI_DIR/$1.ext"
  [ -s "$PKI_DIR/$name.crt" ] && return
  openssl genrsa -out "$PKI_DIR/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subject" -out "$PKI_DIR/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } > "$ext"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$ext"
}

kubeconfig_for() { # NAME CERT
  local file="$STATE_DIR/$1.kubeconfig"
  [ -s "$file" ] && return
  local k=("$KUBECTL" --kubeconfig "$file.tmp")
  "${k[@]}" config set-cluster "$CLUSTER_NAME" --server "https://$NODE_IP:$APISERVER_PORT" \
    --certificate-authority "$PKI_DIR/ca.crt" --embed-certs >/dev/null
  "${k[@]}" config set-credentials "$1" --client-certificate "$PKI_DIR/$2.crt" \
    --client-key "$PKI_DIR/$2.key" --embed-certs >/dev/null
  "${k[@]}" config set-context "$CLUSTER_NAME" --cluster "$CLUSTER_NAME" --user "$1" >/dev/null
  "${k[@]}" config use-context "$CLUSTER_NAME" >/dev/null
  mv "$file.tmp" "$file"
}

make_pki() {
  mkdir -p "$PKI_DIR"; chmod 700 "$PKI_DIR"
  if [ ! -s "$PKI_DIR/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" \
      -days 3650 -subj "/CN=$CLUSTER_NAME-ca" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  fi
  [ -s "$PKI_DIR/sa.key" ] || {
    openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  }
  new_cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  new_cert admin "/O=system:masters/CN=$CLUSTER_NAME-admin"
  new_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  new_cert controller-manager "/CN=system:kube-controller-manager"
  new_cert scheduler "/CN=system:kube-scheduler"
  new_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  new_cert kube-proxy "/CN=system:kube-proxy"
  kubeconfig_for admin admin
  kubeconfig_for controller-manager controller-manager
  kubeconfig_for scheduler scheduler
  kubeconfig_for kubelet kubelet
  kubeconfig_for kube-proxy kube-proxy
}

# render TEMPLATE DEST SED-ARGS...: replace DEST only when its content changes, because
# kube-proxy exits when its configuration file is touched (and `up` runs again and again).
render() {
  local template="$1" dest="$2"; shift 2
  sed "$@" "$template" > "$dest.new"
  if cmp -s "$dest.new" "$dest"; then rm -f "$dest.new"; else mv "$dest.new" "$dest"; fi
}

write_configs() {
  local cfg="$HACK_DIR/cluster"
  mkdir -p "$STATE_DIR/containerd" "$STATE_DIR/cni/net.d" "$STATE_DIR/kubelet"
  render "$cfg/containerd.toml" "$STATE_DIR/containerd/config.toml" \
    -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g"
  render "$cfg/cni.conflist" "$STATE_DIR/cni/net.d/10-plugin-operator.conflist" \
    -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@BRIDGE@|$BRIDGE|g" -e "s|@NODE_POD_CIDR@|$NODE_POD_CIDR|g"
  render "$cfg/kubelet.yaml" "$STATE_DIR/kubelet/config.yaml" \
    -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@CONTAINERD_SOCK@|$CONTAINERD_SOCK|g" \
    -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g"
  render "$cfg/kube-proxy.yaml" "$STATE_DIR/kube-proxy.yaml" \
    -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@NODE_NAME@|$NODE_NAME|g"
  # Pods get no search domains or resolvers from the host: DNS stays inside the cluster.
  [ -f "$STATE_DIR/kubelet/resolv.conf" ] || : > "$STATE_DIR/kubelet/resolv.conf"
}

record_foreign_paths() {
  local p
  [ -f "$STATE_DIR/created-paths" ] && return
  for p in "${FOREIGN_PATHS[@]}"; do [ -e "$p" ] || echo "$p"; done > "$STATE_DIR/created-paths"
  sysctl -e "${SYSCTLS[@]}" 2>/dev/null | sed 's/ = /=/' > "$STATE_DIR/sysctls"
}

# Docker (when it runs) sets the FORWARD policy to DROP; pod traffic must pass.
allow_pod_forwarding() {
  local dir
  for dir in "-s" "-d"; do
    iptables -C FORWARD "$dir" "$POD_CIDR" -m comment --comment "$RULE_COMMENT" -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD 1 "$dir" "$POD_CIDR" -m comment --comment "$RULE_COMMENT" -j ACCEPT
  done
}

apiserver_ready() {
  curl -sf --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://$NODE_IP:$APISERVER_PORT/readyz" >/dev/null
}

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

import_archive() { # TAR REF
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q "name==$2" | grep -q . && return
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$1" >/dev/null
}

up() {
  require_root
  local started=$SECONDS
  for c in containerd runc iptables conntrack openssl gcc; do
    command -v "$c" >/dev/null || die "$c not found: run hack/install-deps.sh"
  done
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins not found in /usr/lib/cni: run hack/install-deps.sh"
  mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
  NODE_IP="$(node_ip)"; [ -n "$NODE_IP" ] || die "cannot find this machine's address (no default route)"
  NODE_NAME="$(hostname | tr '[:upper:]' '[:lower:]')"
  ensure_binaries
  ensure_image_archives
  record_foreign_paths
  make_pki
  write_configs

  start_daemon etcd "$ETCD_BIN_DIR/etcd" --name node --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "node=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
  start_daemon kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
    --client-ca-file "$PKI_DIR/ca.crt" \
    --kubelet-client-certificate "$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI_DIR/sa.pub" \
    --service-account-signing-key-file "$PKI_DIR/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --cert-dir "$STATE_DIR/apiserver"
  wait_until 120 "kube-apiserver /readyz" apiserver_ready
  start_daemon kube-controller-manager "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$PKI_DIR/sa.key" --root-ca-file "$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file "$PKI_DIR/ca.crt" --cluster-signing-key-file "$PKI_DIR/ca.key" \
    --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --cert-dir "$STATE_DIR/controller-manager" \
    --flex-volume-plugin-dir "$STATE_DIR/controller-manager/volume-plugins"
  start_daemon kube-scheduler "$K8S_BIN_DIR/kube-scheduler" \
    --kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false

  start_daemon containerd containerd --config "$STATE_DIR/containerd/config.toml"
  wait_until 60 "containerd ($CONTAINERD_SOCK)" ctr --address "$CONTAINERD_SOCK" version
  import_archive "$CACHE_DIR/images/pause-3.10.tar" "$PAUSE_IMAGE"
  import_archive "$CACHE_DIR/images/coredns-$COREDNS_VERSION.tar" "$COREDNS_IMAGE"
  allow_pod_forwarding
  start_daemon kubelet "$K8S_BIN_DIR/kubelet" --config "$STATE_DIR/kubelet/config.yaml" \
    --kubeconfig "$STATE_DIR/kubelet.kubeconfig" --root-dir "$STATE_DIR/kubelet" \
    --cert-dir "$STATE_DIR/kubelet/pki" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"
  start_daemon kube-proxy "$K8S_BIN_DIR/kube-proxy" --config "$STATE_DIR/kube-proxy.yaml"
  wait_until 180 "node $NODE_NAME Ready" node_ready

  sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" \
      -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$HACK_DIR/cluster/coredns.yaml" |
    kubectl_admin apply -f - >/dev/null
  kubectl_admin -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null ||
    die "CoreDNS did not become ready; kubectl --kubeconfig $KUBECONFIG_ADMIN -n kube-system describe pods"
  # The bridge CNI enforces no NetworkPolicy: kube-router's policy controller does.
  "$HACK_DIR/cluster/network-policy.sh" up ||
    die "NetworkPolicy enforcement did not start; see $LOG_DIR/kube-router.log"
  log "cluster up in $((SECONDS - started))s; logs: $LOG_DIR"
  echo "$KUBECONFIG_ADMIN"
}

stop_pid() { # NAME PID
  local pid="$2"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "$1 did not stop on SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_daemon() {
  local pid
  pid="$(pid_of "$1")" && stop_pid "$1" "$pid"
  rm -f "$RUN_DIR/$1.pid"
}

remove_iptables_rules() {
  local tool table chain rule
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      # Jumps from the built-in (or Docker's) chains into KUBE-/CNI- chains, and our own rules.
      { "$tool-save" -t "$table" 2>/dev/null || true; } |
        { grep -E '^-A ' || true; } | { grep -Ev '^-A (KUBE-|CNI-)' || true; } |
        { grep -E -- "-j (KUBE-|CNI-)|--comment \"?$RULE_COMMENT\"?( |$)" || true; } |
        while read -r rule; do
          # The saved rule is already quoted for the shell: -A CHAIN ... becomes -D CHAIN ...
          eval "$tool -t $table ${rule/-A/-D}" 2>/dev/null || true
        done
      for chain in $("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

remove_cgroups() {
  local controller
  for controller in /sys/fs/cgroup/*/; do
    [ -d "${controller}kubepods" ] || continue
    find "${controller}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

down() {
  require_root
  local pid id p
  "$HACK_DIR/cluster/network-policy.sh" down || true
  stop_daemon kube-proxy
  stop_daemon kubelet
  # Every container of the cluster, then their shims.
  if [ -d "$RUNC_ROOT/k8s.io" ]; then
    for id in $(runc --root "$RUNC_ROOT/k8s.io" list -q 2>/dev/null); do
      runc --root "$RUNC_ROOT/k8s.io" kill -a "$id" KILL 2>/dev/null || true
      runc --root "$RUNC_ROOT/k8s.io" delete --force "$id" 2>/dev/null || true
    done
  fi
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
    stop_pid containerd-shim "$pid"
  done
  # Anything left in the pods' cgroups (a container whose runc state was lost).
  for p in /sys/fs/cgroup/pids/kubepods; do
    [ -d "$p" ] && find "$p" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  for d in containerd kube-scheduler kube-controller-manager kube-apiserver etcd dockerd; do
    stop_daemon "$d"
  done
  # Pod network namespaces (containerd names them cni-<uuid>) and the CNI bridge.
  for p in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do ip netns delete "$p" 2>/dev/null || true; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  remove_iptables_rules
  # Mounts under our directories (container rootfs, shm, secret volumes), deepest first.
  { findmnt -rn -o TARGET | grep -E "^($STATE_DIR|$RUN_DIR)(/|$)" || true; } | sort -r |
    while read -r p; do umount -l "$p" 2>/dev/null || true; done
  remove_cgroups
  if [ -f "$STATE_DIR/sysctls" ]; then
    while read -r p; do sysctl -q -w "$p" >/dev/null 2>&1 || true; done < "$STATE_DIR/sysctls"
  fi
  if [ -f "$STATE_DIR/created-paths" ]; then
    while read -r p; do [ -n "$p" ] && rm -rf "$p"; done < "$STATE_DIR/created-paths"
  fi
  rm -rf "$STATE_DIR" "$RUN_DIR"
  log "cluster down; removed $STATE_DIR and $RUN_DIR"
}

status() {
  local d pid running=0
  for d in "${DAEMONS[@]}" kube-router dockerd; do
    if pid="$(pid_of "$d")"; then
      printf '%-24s running (pid %s)\n' "$d" "$pid"; running=1
    else
      printf '%-24s stopped\n' "$d"
    fi
  done
  echo "kubeconfig: $KUBECONFIG_ADMIN"
  echo "logs:       $LOG_DIR"
  if [ "$running" = 1 ] && [ -s "$KUBECONFIG_ADMIN" ]; then
    kubectl_admin get nodes -o wide 2>&1 || true
    kubectl_admin get pods -A -o wide 2>&1 || true
  fi
}

# One up or down at a time: test sessions started together all call `up`.
lock_cluster() {
  exec 7>/run/plugin-operator-cluster.lock
  flock 7
}

# Sourcing the script (to debug one step) defines the functions and runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    up) require_root; lock_cluster; up ;;
    down) require_root; lock_cluster; down ;;
    status) status ;;
    *) die "usage: $0 up|down|status" ;;
  esac
fi
