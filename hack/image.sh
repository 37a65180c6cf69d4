#!/usr/bin/env bash
# Build plugin-operator's container image and import it into the local cluster's containerd.
#
#   hack/image.sh [build|import|all|base|ref]     (default: all)
#
#   base    make sure the base image exists in Docker: BASE_IMAGE if given, the public
#           python:3.11-slim-bookworm when a registry answers, else an equivalent Debian
#           bookworm + python3 image debootstrapped offline (cached under $CACHE_DIR/images)
#   build   wheels of our package and its dependencies (pip, on the host), then docker build
#   import  docker save | ctr import into the cluster's containerd (hack/cluster.sh up first)
#   ref     print the image reference
#   plugin-image DIR REF
#           a plugin image as users make them for spec.source.image: FROM scratch, the
#           plugin folder DIR at /plugin; built as REF and imported into the cluster
#
# Environment: BASE_IMAGE (skip the probe and use this base), IMAGE (the reference to build,
# default plugin-operator.dev/plugin-operator:<version from pyproject>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/cluster/common.sh"
trap 'step_end failed' EXIT

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml" | head -1)"
IMAGE="${IMAGE:-plugin-operator.dev/plugin-operator:$VERSION}"
PUBLIC_BASE=python:3.11-slim-bookworm
OFFLINE_BASE=plugin-operator.dev/base:bookworm-python3.11
BASE_ROOTFS_TAR="$CACHE_DIR/images/debian-bookworm-python3.11-rootfs.tar"
WHEEL_DIR="$REPO_ROOT/dist/wheels"
# Build logs live in the cache, so building (e.g. for kind) needs no root.
BUILD_LOG_DIR="$CACHE_DIR/logs"

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return
  command -v dockerd >/dev/null || die "dockerd not found: run hack/install-deps.sh"
  [ "$(id -u)" -eq 0 ] || die "Docker is not running and only root can start it here; start Docker"
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  log "starting dockerd (log: $LOG_DIR/dockerd.log)"
  # Our own pidfile: `hack/cluster.sh down` stops the dockerd this script started. Builds
  # run with --network none, so Docker needs no bridge, no iptables rules and no forwarding
  # changes on this machine.
  # fd 8 is the image lock: dockerd must not inherit it, or it holds the lock forever.
  setsid dockerd --pidfile "$RUN_DIR/dockerd.pid" --iptables=false --ip-forward=false \
    --bridge=none >"$LOG_DIR/dockerd.log" 2>&1 < /dev/null 8>&- &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  die "dockerd did not start; see $LOG_DIR/dockerd.log"
}

build_offline_base_rootfs() {
  [ -s "$BASE_ROOTFS_TAR" ] && return
  command -v debootstrap >/dev/null || die "debootstrap not found: run hack/install-deps.sh"
  local root="$CACHE_DIR/images/rootfs.tmp" mirror
  mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  rm -rf "$root"; mkdir -p "$root"
  log "debootstrapping Debian bookworm + python3 from $mirror (a few minutes, once)"
  : > "$CACHE_DIR/images/debootstrap.log"
  with_heartbeat "debootstrapping Debian bookworm" into_log "$CACHE_DIR/images/debootstrap.log" \
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" ||
    die "debootstrap failed; see $CACHE_DIR/images/debootstrap.log"
  # What a slim image leaves out: docs, manuals, locales, package lists and caches.
  rm -rf "$root"/usr/share/{doc,man,info,locale,lintian} "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/log/* "$root"/tmp/*
  : > "$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -cf "$BASE_ROOTFS_TAR.tmp" .
  mv "$BASE_ROOTFS_TAR.tmp" "$BASE_ROOTFS_TAR"
  rm -rf "$root"
}

registry_reachable() {
  command -v curl >/dev/null || return 1
  curl -s -o /dev/null -m 5 https://registry-1.docker.io/v2/
}

pull_public_base() { docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; }

# Sets BASE_REF to the base image to build from, BASE_RESULT to cached, pulled or built.
ensure_base() {
  BASE_RESULT=cached
  if [ -n "${BASE_IMAGE:-}" ]; then
    BASE_REF="$BASE_IMAGE"; return
  fi
  ensure_dockerd
  BASE_REF="$PUBLIC_BASE"
  docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1 && return
  if registry_reachable && with_heartbeat "pulling $PUBLIC_BASE" pull_public_base; then
    BASE_RESULT=pulled; return
  fi
  BASE_REF="$OFFLINE_BASE"
  if ! docker image inspect "$OFFLINE_BASE" >/dev/null 2>&1; then
    build_offline_base_rootfs
    log "importing the offline base image $OFFLINE_BASE"
    docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
      "$BASE_ROOTFS_TAR" "$OFFLINE_BASE" >/dev/null
    BASE_RESULT=built
  fi
}

# Wheels for the image's interpreter (CPython 3.11, glibc x86_64), made on the host so the
# image build never touches the network. The dependencies' wheels, and the wheels our build
# backend needs, are fetched from PyPI once per pyproject.toml; our own wheel is then built
# offline from those.
# Sets WHEELS_RESULT: built when a wheel changed, else cached.
build_wheels() {
  local python="$REPO_ROOT/.venv/bin/python" key deps="$WHEEL_DIR/deps" app="$WHEEL_DIR/app"
  local build_deps pip_log="$BUILD_LOG_DIR/wheels.log" old_app
  [ -x "$python" ] || python=python3
  key="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)"
  build_deps="$CACHE_DIR/wheels/build-$key"
  local pip=("$python" -m pip --disable-pip-version-check)
  WHEELS_RESULT=cached
  if [ "$(cat "$deps/.pyproject-key" 2>/dev/null)" != "$key" ] || [ ! -s "$build_deps/.done" ]; then
    log "fetching the dependencies' wheels (once per pyproject.toml) into $deps"
    WHEELS_RESULT=built
    rm -rf "$deps" "$build_deps"; mkdir -p "$deps" "$build_deps"
    : >"$pip_log"
    with_heartbeat "fetching the dependencies' wheels" \
      into_log "$pip_log" "${pip[@]}" wheel --quiet --wheel-dir "$deps" "$REPO_ROOT" ||
      { cat "$pip_log" >&2; die "pip wheel failed (log: $pip_log)"; }
    rm -f "$deps"/plugin_operator-*.whl
    local requires=()
    mapfile -t requires < <("$python" -c '
import tomllib, sys
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
      "$REPO_ROOT/pyproject.toml")
    with_heartbeat "fetching the build requirements' wheels" \
      into_log "$pip_log" "${pip[@]}" wheel --quiet --wheel-dir "$build_deps" "${requires[@]}" ||
      { cat "$pip_log" >&2; die "pip wheel of the build requirements failed (log: $pip_log)"; }
    echo "$key" > "$deps/.pyproject-key"; touch "$build_deps/.done"
  fi
  old_app="$(cat "$app"/*.whl 2>/dev/null | sha256sum)" || true
  log "building the plugin-operator wheel into $app"
  rm -rf "$app"; mkdir -p "$app"
  : >"$pip_log"
  with_heartbeat "building the plugin-operator wheel" into_log "$pip_log" \
    "${pip[@]}" wheel --quiet --no-deps --no-index --find-links "$build_deps" --wheel-dir "$app" \
    "$REPO_ROOT" || { cat "$pip_log" >&2; die "building our wheel failed (log: $pip_log)"; }
  [ "$(cat "$app"/*.whl 2>/dev/null | sha256sum)" = "$old_app" ] || WHEELS_RESULT=built
}

# copy-tree (tools/copy-tree), static so that it runs inside any plugin image, and
# plugin-front (tools/plugin-front), the gRPC front every plugin host starts. Go's build
# cache makes a rebuild with unchanged sources nearly free. Sets TOOLS_RESULT: built when a
# binary changed, else cached.
build_tool() {
  (cd "$REPO_ROOT/tools/$1" &&
    CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS="-buildvcs=false -mod=readonly" \
      go build -trimpath -ldflags="-s -w" -o "$REPO_ROOT/dist/tools/$1" .)
}

build_tools() {
  command -v go >/dev/null || die "Go is not installed; install Go 1.26 or newer (https://go.dev/doc/install)"
  mkdir -p "$REPO_ROOT/dist/tools"
  local tool out old
  TOOLS_RESULT=cached
  for tool in copy-tree plugin-front; do
    out="$REPO_ROOT/dist/tools/$tool" old=""
    [ ! -f "$out" ] || old="$(sha256sum < "$out")"
    with_heartbeat "building tools/$tool" build_tool "$tool" || die "building tools/$tool failed"
    [ "$(sha256sum < "$out")" = "$old" ] || TOOLS_RESULT=built
  done
}

docker_build_image() { # BASE
  docker build --quiet --network none --build-arg "BASE_IMAGE=$1" --build-arg "VERSION=$VERSION" \
    -t "$IMAGE" "$REPO_ROOT" >/dev/null
}

build_image() {
  local before after
  mkdir -p "$BUILD_LOG_DIR"
  step_begin "image: base" "looking for the base image"
  ensure_base
  step_end "$BASE_RESULT"
  step_begin "image: wheels" "making the wheels of plugin-operator and its dependencies"
  build_wheels
  step_end "$WHEELS_RESULT"
  step_begin "image: Go tools" "building copy-tree and plugin-front"
  build_tools
  step_end "$TOOLS_RESULT"
  step_begin "image: docker build" "docker build $IMAGE from $BASE_REF"
  before="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null)" || before=""
  with_heartbeat "building $IMAGE" docker_build_image "$BASE_REF"
  after="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
  log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
  if [ "$after" = "$before" ]; then step_end cached; else step_end built; fi
}

import_image() {
  step_begin "$STEP_PREFIX: import" "importing $IMAGE into the cluster's containerd"
  [ -S "$CONTAINERD_SOCK" ] || die "the cluster's containerd is not running ($CONTAINERD_SOCK); run hack/cluster.sh up"
  ensure_dockerd
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not built; run hack/image.sh build"
  local want marker
  want="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
  marker="$STATE_DIR/imported-$(echo "$IMAGE" | tr '/:' '__')"
  # The Docker image id of the last import: a re-run with the same image does nothing.
  if [ "$(cat "$marker" 2>/dev/null)" = "$want" ] &&
     ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q "name==$IMAGE" | grep -q .; then
    log "$IMAGE already in the cluster"; step_end cached; return
  fi
  with_heartbeat "importing $IMAGE" save_and_import
  echo "$want" > "$marker"
  step_end built
}

save_and_import() {
  docker save "$IMAGE" | ctr --address "$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null
}


build_plugin_image() {
  local dir="$1" ref="$2" context
  step_begin "$STEP_PREFIX: docker build" "docker build $ref from $dir"
  [ -f "$dir/plugin.json" ] || die "$dir has no plugin.json: give the plugin's folder"
  ensure_dockerd
  context="$(mktemp -d)"
  cp -a "$dir" "$context/plugin"
  printf 'FROM scratch\nCOPY plugin /plugin\n' > "$context/Dockerfile"
  docker build --quiet --network none -t "$ref" "$context" >/dev/null ||
    { rm -rf "$context"; die "docker build of $ref failed"; }
  rm -rf "$context"
  step_end built
}

# One build or import at a time (two e2e sessions may start together): they share
# dist/wheels and the image tag.
lock_image_work() {
  mkdir -p "$CACHE_DIR" "$BUILD_LOG_DIR"
  exec 8>"$CACHE_DIR/.image.lock"
  flock 8
}

# Progress: "[n/m] ..." for the steps below, named "image: ..." (or "plugin image: ...").
STEP_PREFIX=image
[ "${1:-all}" = ref ] || lock_image_work
case "${1:-all}" in
  base) ensure_base; echo "$BASE_REF" ;;
  build) STEPS_TOTAL=4; build_image; echo "$IMAGE" ;;
  import) STEPS_TOTAL=1; import_image; echo "$IMAGE" ;;
  all) STEPS_TOTAL=5; build_image; import_image; echo "$IMAGE" ;;
  ref) echo "$IMAGE" ;;
  plugin-image)
    [ "$#" -eq 3 ] || die "usage: $0 plugin-image PLUGIN_DIR IMAGE_REF"
    STEPS_TOTAL=2 STEP_PREFIX="plugin image"
    build_plugin_image "$2" "$3"; IMAGE="$3"; import_image; echo "$IMAGE" ;;
  *) die "usage: $0 [build|import|all|base|ref|plugin-image DIR REF]" ;;
esac
