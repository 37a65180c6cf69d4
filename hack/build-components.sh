#!/usr/bin/env bash
# Build Kubernetes, etcd and friends from the Go module proxy into the versioned cache.
#
#   hack/build-components.sh [COMPONENT ...]
#
# Components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
# kubectl kubeadm etcd coredns helm kind. With no argument: the control plane for
# integration tests (etcd, kube-apiserver, kubectl). A binary already in the cache is
# never rebuilt. Prints the directory of each requested binary's cache on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
[ "$#" -gt 0 ] || set -- etcd kube-apiserver kubectl
# One build at a time: two runs would race on the same wrapper modules and cache files.
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build-components.lock"
if ! flock -n 9; then
  log "another hack/build-components.sh is running; waiting for it"
  flock 9
fi
command -v go >/dev/null || die "Go is not installed; install Go 1.24 or newer (https://go.dev/doc/install)"

k8s_wanted=()
for component in "$@"; do
  case "$component" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl|kubeadm)
      [ -x "$K8S_BIN_DIR/$component" ] || k8s_wanted+=("$component") ;;
    etcd|coredns|helm|kind) ;;
    *) die "unknown component '$component' (see the header of $0)" ;;
  esac
done

# A wrapper module per build, because Kubernetes' and etcd's own go.mod files use
# replace directives that Go ignores in a dependency.
new_wrapper() {
  local dir="$CACHE_DIR/build/$1"
  mkdir -p "$dir"
  printf '%s\n' "$dir"
}

build_kubernetes() {
  local dir gomod staging ver="${K8S_VERSION#v1.}"
  dir="$(new_wrapper "kubernetes-$K8S_VERSION")"
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  # The staging modules are published as v0.<minor>.<patch>; read their list from
  # upstream's go.mod because it changes between minors.
  staging="$(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])')"
  {
    echo "module plugin-operator.dev/build/kubernetes"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    for m in $staging; do echo "replace $m => $m v0.$ver"; done
  } > "$dir/go.mod"
  local pkg="k8s.io/component-base/version" cgo="k8s.io/client-go/pkg/version" major minor
  major="$(echo "${K8S_VERSION#v}" | cut -d. -f1)"; minor="$(echo "${K8S_VERSION#v}" | cut -d. -f2)"
  local ldflags="-s -w"
  for p in "$pkg" "$cgo"; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local pkgs=()
  for c in "${k8s_wanted[@]}"; do
    case "$c" in
      kubectl) pkgs+=("k8s.io/kubernetes/cmd/kubectl") ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$c") ;;
    esac
  done
  log "building ${k8s_wanted[*]} $K8S_VERSION (a cold build takes 10-40 min on 2 cores)"
  mkdir -p "$K8S_BIN_DIR.tmp"
  (cd "$dir" && go build -mod=mod -trimpath -tags selinux,notest -ldflags "$ldflags" \
    -o "$K8S_BIN_DIR.tmp/" "${pkgs[@]}")
  mkdir -p "$K8S_BIN_DIR"
  for c in "${k8s_wanted[@]}"; do mv "$K8S_BIN_DIR.tmp/$c" "$K8S_BIN_DIR/$c"; done
  rmdir "$K8S_BIN_DIR.tmp" 2>/dev/null || true
}

build_etcd() {
  [ -x "$ETCD_BIN_DIR/etcd" ] && return
  local dir
  dir="$(new_wrapper "etcd-$ETCD_VERSION")"
  printf 'module plugin-operator.dev/build/etcd\ngo 1.23\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$dir/go.mod"
  log "building etcd $ETCD_VERSION"
  mkdir -p "$ETCD_BIN_DIR"
  (cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$ETCD_BIN_DIR/etcd.tmp" \
    go.etcd.io/etcd/server/v3)
  mv "$ETCD_BIN_DIR/etcd.tmp" "$ETCD_BIN_DIR/etcd"
}

# Tools whose main module installs as is.
install_tool() {
  local name="$1" module="$2"
  [ -x "$TOOLS_BIN_DIR/$name" ] && return
  log "building $name ($module)"
  mkdir -p "$TOOLS_BIN_DIR"
  GOBIN="$TOOLS_BIN_DIR" go install -trimpath -ldflags "-s -w $3" "$module"
}

for component in "$@"; do
  case "$component" in
    etcd) build_etcd; echo "$ETCD_BIN_DIR" ;;
    coredns) install_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION" ""; echo "$TOOLS_BIN_DIR" ;;
    helm) install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
            "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"; echo "$TOOLS_BIN_DIR" ;;
    kind) install_tool kind "sigs.k8s.io/kind@$KIND_VERSION" ""; echo "$TOOLS_BIN_DIR" ;;
  esac
done
if [ "${#k8s_wanted[@]}" -gt 0 ]; then build_kubernetes; fi
for component in "$@"; do
  case "$component" in kube-*|kubectl|kubeadm) echo "$K8S_BIN_DIR" ;; esac
done | sort -u
