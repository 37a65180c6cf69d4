#!/usr/bin/env bash
# A throw-away Kubernetes control plane (etcd + kube-apiserver) on loopback, for API-level tests.
#
#   hack/control-plane.sh start DIR   build what is missing, start, print DIR/kubeconfig
#   hack/control-plane.sh stop DIR    stop both processes and delete DIR
#   hack/control-plane.sh status DIR  say whether it runs
#
# Binaries come from $KUBEBUILDER_ASSETS when it holds etcd, kube-apiserver and kubectl,
# otherwise from the versioned cache that hack/build-components.sh fills. Every run gets a
# fresh PKI, fresh free ports and an empty etcd, so nothing leaks between test sessions.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { die "usage: $0 start|stop|status DIR"; }
[ "$#" -eq 2 ] || usage
command="$1"; DIR="$2"

binaries() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ] &&
     [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
    ETCD="$KUBEBUILDER_ASSETS/etcd"; APISERVER="$KUBEBUILDER_ASSETS/kube-apiserver"
    return
  fi
  "$HACK_DIR/build-components.sh" etcd kube-apiserver kubectl >/dev/null
  ETCD="$ETCD_BIN_DIR/etcd"; APISERVER="$K8S_BIN_DIR/kube-apiserver"
}

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

make_pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=plugin-operator-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() { # name subject [extensions]
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        ${3:+-extfile <(printf '%s' "$3")} -out "$1.crt" 2>/dev/null
    }
    sign serving "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
    sign admin "/O=system:masters/CN=plugin-operator-test-admin"
    openssl genrsa -out service-account.key 2048 2>/dev/null
    openssl rsa -in service-account.key -pubout -out service-account.pub 2>/dev/null
  )
}

wait_ready() {
  local url="$1" pid="$2" log="$3"
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2; die "kube-apiserver exited; log: $log"; }
    if curl -fsS --max-time 2 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" \
         --key "$DIR/pki/admin.key" "$url/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$log" >&2
  die "kube-apiserver not ready after 60 s; log: $log"
}

write_kubeconfig() {
  local server="$1" b64="base64 -w0"
  cat > "$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: plugin-operator-test
  cluster:
    server: $server
    certificate-authority-data: $($b64 < "$DIR/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 < "$DIR/pki/admin.crt")
    client-key-data: $($b64 < "$DIR/pki/admin.key")
contexts:
- name: plugin-operator-test
  context: {cluster: plugin-operator-test, user: admin}
current-context: plugin-operator-test
EOF
}

start() {
  [ ! -e "$DIR/pids" ] || die "$DIR already holds a control plane; stop it first"
  binaries
  mkdir -p "$DIR"
  make_pki
  local etcd_port peer_port api_port
  read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
  "$ETCD" --name test --data-dir "$DIR/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" \
    --log-level warn >"$DIR/etcd.log" 2>&1 &
  echo "$!" > "$DIR/pids"
  "$APISERVER" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$DIR/pki/serving.crt" --tls-private-key-file "$DIR/pki/serving.key" \
    --client-ca-file "$DIR/pki/ca.crt" \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/pki/service-account.pub" \
    --service-account-signing-key-file "$DIR/pki/service-account.key" \
    --disable-admission-plugins ServiceAccount --allow-privileged=true \
    --cert-dir "$DIR/pki" >"$DIR/kube-apiserver.log" 2>&1 &
  local api_pid=$!
  echo "$api_pid" >> "$DIR/pids"
  wait_ready "https://127.0.0.1:$api_port" "$api_pid" "$DIR/kube-apiserver.log"
  write_kubeconfig "https://127.0.0.1:$api_port"
  echo "$DIR/kubeconfig"
}

stop() {
  [ -d "$DIR" ] || return 0
  if [ -f "$DIR/pids" ]; then
    # The apiserver first, so it does not log a storm of etcd errors on the way out.
    local pids
    pids="$(tac "$DIR/pids")"
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
      local alive=0
      for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" -eq 1 ] || break
      sleep 0.1
    done
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  rm -rf "$DIR"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status)
    if [ -f "$DIR/pids" ] && xargs -r kill -0 < "$DIR/pids" 2>/dev/null; then
      echo "running: $(grep -o 'https://[^ ]*' "$DIR/kubeconfig")"
    else
      echo "not running"; exit 1
    fi ;;
  *) usage ;;
esac
