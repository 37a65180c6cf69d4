# shellcheck shell=bash
# Paths and addresses of the local single-node cluster, shared by hack/cluster.sh and
# hack/image.sh. Source it after hack/lib.sh.

# Everything the cluster writes lives under these three directories, so `down` can remove
# exactly what `up` created. Override with PLUGIN_OPERATOR_CLUSTER_DIR.
STATE_DIR="${PLUGIN_OPERATOR_CLUSTER_DIR:-/var/lib/plugin-operator-cluster}"
RUN_DIR="/run/plugin-operator-cluster"
LOG_DIR="$STATE_DIR/logs"
PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_ADMIN="$STATE_DIR/admin.kubeconfig"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
RUNC_ROOT="$RUN_DIR/runc"

CLUSTER_NAME=plugin-operator-local
# Ports away from the defaults, so a test control plane (etcd on 2379, an apiserver on
# 6443) on the same machine does not collide with this cluster.
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
BRIDGE=po-cni0
PAUSE_IMAGE=localhost/plugin-operator/pause:3.10
COREDNS_IMAGE="localhost/plugin-operator/coredns:$COREDNS_VERSION"

# The node's address: the interface of the default route (pods reach the apiserver there).
node_ip() {
  ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'
}
