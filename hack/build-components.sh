#!/usr/bin/env bash
# Build Kubernetes, etcd and friends from the Go module proxy into the versioned cache.
#
#   hack/build-components.sh [COMPONENT ...]
#
# Components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
# kubectl kubeadm etcd coredns helm kind. With no argument: the control plane for
# integration tests (etcd, kube-apiserver, kubectl). A binary already in the cache is
# never rebuilt. Prints the directory of each requested binary's cache on stdout; progress
# ("[n/m] building COMPONENT (elapsed Ns)", "[n/m] COMPONENT: cached", a line every 30 s
# while a build runs) goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap 'step_end failed' EXIT

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

declare -A requested=()
for component in "$@"; do
  case "$component" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl|kubeadm) ;;
    etcd|coredns|helm|kind) ;;
    *) die "unknown component '$component' (see the header of $0)" ;;
  esac
  requested[$component]=1
done
STEPS_TOTAL=${#requested[@]}
declare -A done_=()

# A wrapper module per build, because Kubernetes' and etcd's own go.mod files use
# replace directives that Go ignores in a dependency.
new_wrapper() {
  local dir="$CACHE_DIR/build/$1"
  mkdir -p "$dir"
  printf '%s\n' "$dir"
}

go_in() { # DIR GO-ARGS...
  local dir="$1"
  shift
  (cd "$dir" && go "$@")
}

kubernetes_gomod() { # WRAPPER-DIR: the path of upstream's go.mod, downloaded
  go_in "$1" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'
}

# The wrapper module of Kubernetes and the linker flags, once; sets k8s_dir and k8s_ldflags.
k8s_dir=""
k8s_ldflags=""
prepare_kubernetes() {
  local dir gomod staging ver="${K8S_VERSION#v1.}"
  dir="$(new_wrapper "kubernetes-$K8S_VERSION")"
  gomod="$(with_heartbeat "downloading k8s.io/kubernetes $K8S_VERSION" kubernetes_gomod "$dir")"
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
  k8s_dir="$dir"
  k8s_ldflags="$ldflags"
}

# One Kubernetes component, one go build: the Go build cache shares what they have in common.
build_kubernetes_component() {
  local c="$1"
  if [ -x "$K8S_BIN_DIR/$c" ]; then step_cached "$c"; return; fi
  step_begin "$c" "building $c $K8S_VERSION"
  if [ -z "$k8s_dir" ]; then
    log "preparing the build of Kubernetes $K8S_VERSION (a cold build takes 10-40 min on 2 cores)"
    prepare_kubernetes
  fi
  mkdir -p "$K8S_BIN_DIR.tmp"
  with_heartbeat "building $c" go_in "$k8s_dir" build -mod=mod -trimpath -tags selinux,notest \
    -ldflags "$k8s_ldflags" -o "$K8S_BIN_DIR.tmp/$c" "k8s.io/kubernetes/cmd/$c"
  mkdir -p "$K8S_BIN_DIR"
  mv "$K8S_BIN_DIR.tmp/$c" "$K8S_BIN_DIR/$c"
  rmdir "$K8S_BIN_DIR.tmp" 2>/dev/null || true
  step_end built
}

build_etcd() {
  if [ -x "$ETCD_BIN_DIR/etcd" ]; then step_cached etcd; return; fi
  step_begin etcd "building etcd $ETCD_VERSION"
  local dir
  dir="$(new_wrapper "etcd-$ETCD_VERSION")"
  printf 'module plugin-operator.dev/build/etcd\ngo 1.23\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$dir/go.mod"
  mkdir -p "$ETCD_BIN_DIR"
  with_heartbeat "building etcd" go_in "$dir" build -mod=mod -trimpath -ldflags "-s -w" \
    -o "$ETCD_BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$ETCD_BIN_DIR/etcd.tmp" "$ETCD_BIN_DIR/etcd"
  step_end built
}

# Tools whose main module installs as is.
install_tool() {
  local name="$1" module="$2"
  if [ -x "$TOOLS_BIN_DIR/$name" ]; then step_cached "$name"; return; fi
  step_begin "$name" "building $name ($module)"
  mkdir -p "$TOOLS_BIN_DIR"
  with_heartbeat "building $name" env GOBIN="$TOOLS_BIN_DIR" \
    go install -trimpath -ldflags "-s -w $3" "$module"
  step_end built
}

# Each component once (for the count), whatever the arguments repeat.
once() { [ -z "${done_[$1]:-}" ] && done_[$1]=1; }

for component in "$@"; do
  case "$component" in
    etcd) if once etcd; then build_etcd; fi; echo "$ETCD_BIN_DIR" ;;
    coredns)
      if once coredns; then install_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION" ""; fi
      echo "$TOOLS_BIN_DIR" ;;
    helm)
      if once helm; then
        install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
          "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      fi
      echo "$TOOLS_BIN_DIR" ;;
    kind) if once kind; then install_tool kind "sigs.k8s.io/kind@$KIND_VERSION" ""; fi; echo "$TOOLS_BIN_DIR" ;;
  esac
done
for component in "$@"; do
  case "$component" in
    kube-*|kubelet|kubectl|kubeadm) if once "$component"; then build_kubernetes_component "$component"; fi ;;
  esac
done
for component in "$@"; do
  case "$component" in kube-*|kubelet|kubectl|kubeadm) echo "$K8S_BIN_DIR" ;; esac
done | sort -u
