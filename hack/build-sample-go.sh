#!/usr/bin/env bash
# Build the Go sample plugin and the Go compatibility programs, cached by a hash of their
# sources: a second run with unchanged sources builds nothing.
#
#   hack/build-sample-go.sh [sample-go] [compat-go]      (default: both)
#
# sample-go: plugins/sample-go/dist/ becomes a Grafana plugin directory (plugin.json +
#            gpx_sample_go_linux_amd64) next to a zip with Grafana's layout (one top folder
#            named after the plugin id).
# compat-go: grafana-client and frame-json-bench from tests/compat-go.
# Prints KEY=PATH lines on stdout: SAMPLE_GO_DIST, SAMPLE_GO_ZIP, GRAFANA_CLIENT,
# FRAME_JSON_BENCH. Uses Go's module proxy and Go's own module and build caches.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap 'step_end failed' EXIT

PLUGIN_SRC="$REPO_ROOT/plugins/sample-go"
COMPAT_SRC="$REPO_ROOT/tests/compat-go"
PLUGIN_ID=plugin-operator-sample-go-datasource
EXECUTABLE=gpx_sample_go_linux_amd64

export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS="-buildvcs=false -mod=readonly"
command -v go >/dev/null || die "Go is not installed; install Go 1.26 or newer (https://go.dev/doc/install)"
[ "$#" -gt 0 ] || set -- sample-go compat-go
STEPS_TOTAL=$#

# A hash of everything that decides the output: sources, this script and the Go version.
source_hash() {
  local dir="$1"
  {
    go version
    sha256sum < "${BASH_SOURCE[0]}"
    (cd "$dir" && find . -path ./dist -prune -o -type f \
      \( -name '*.go' -o -name go.mod -o -name go.sum -o -name plugin.json \) -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

# Copy $1 to $2 only when it differs, by rename, so a running copy of $2 is never overwritten.
install_file() {
  cmp -s "$1" "$2" 2>/dev/null && return
  cp -p "$1" "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

# Deterministic zip (fixed times, modes kept) with one top folder named after the plugin id.
make_zip() {
  local plugin_dir="$1" out="$2"
  python3 - "$plugin_dir" "$PLUGIN_ID" "$out" <<'PY'
import os, sys, zipfile
src, top, out = sys.argv[1:]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(os.listdir(src)):
        info = zipfile.ZipInfo(f"{top}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (os.stat(os.path.join(src, name)).st_mode & 0o777 | 0o100000) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(src, name), "rb") as f:
            zf.writestr(info, f.read())
os.replace(out + ".tmp", out)
PY
}

go_build_in() { # DIR GO-BUILD-ARGS...
  local dir="$1"
  shift
  (cd "$dir" && go build -trimpath -ldflags "-s -w" "$@")
}

# Keep the newest few builds: enough for test sessions still using an older one.
prune() {
  find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '*.tmp' -printf '%T@ %p\n' |
    sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
}

build_sample_go() {
  local hash out version zip
  hash="$(source_hash "$PLUGIN_SRC")"
  out="$CACHE_DIR/sample-go/$hash"
  version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["info"]["version"])' \
    "$PLUGIN_SRC/plugin.json")"
  zip="$PLUGIN_ID-$version.linux_amd64.zip"
  if [ ! -f "$out/$zip" ]; then
    step_begin "Go sample plugin" "building the Go sample plugin ($hash)"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp/$PLUGIN_ID"
    with_heartbeat "building the Go sample plugin" \
      go_build_in "$PLUGIN_SRC" -o "$out.tmp/$PLUGIN_ID/$EXECUTABLE" ./pkg
    cp "$PLUGIN_SRC/plugin.json" "$out.tmp/$PLUGIN_ID/plugin.json"
    make_zip "$out.tmp/$PLUGIN_ID" "$out.tmp/$zip"
    rm -rf "$out" && mv "$out.tmp" "$out"
    prune "$CACHE_DIR/sample-go"
    step_end built
  else
    step_cached "Go sample plugin"
  fi
  local dist="$PLUGIN_SRC/dist"
  mkdir -p "$dist"
  install_file "$out/$PLUGIN_ID/plugin.json" "$dist/plugin.json"
  install_file "$out/$PLUGIN_ID/$EXECUTABLE" "$dist/$EXECUTABLE"
  find "$dist" -maxdepth 1 -name "$PLUGIN_ID-*.zip" ! -name "$zip" -delete
  install_file "$out/$zip" "$dist/$zip"
  echo "SAMPLE_GO_DIST=$dist"
  echo "SAMPLE_GO_ZIP=$dist/$zip"
}

build_compat_go() {
  local hash out
  hash="$(source_hash "$COMPAT_SRC")"
  out="$CACHE_DIR/compat-go/$hash"
  if [ ! -x "$out/frame-json-bench" ]; then
    step_begin "Go compatibility programs" "building the Go compatibility programs ($hash)"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    with_heartbeat "building the Go compatibility programs" \
      go_build_in "$COMPAT_SRC" -o "$out.tmp/" ./cmd/...
    rm -rf "$out" && mv "$out.tmp" "$out"
    prune "$CACHE_DIR/compat-go"
    step_end built
  else
    step_cached "Go compatibility programs"
  fi
  echo "GRAFANA_CLIENT=$out/grafana-client"
  echo "FRAME_JSON_BENCH=$out/frame-json-bench"
}

mkdir -p "$CACHE_DIR"
# Test sessions and people may run this at the same time; one builds, the others wait.
exec 9>"$CACHE_DIR/build-sample-go.lock"
flock 9
for target in "$@"; do
  case "$target" in
    sample-go) build_sample_go ;;
    compat-go) build_compat_go ;;
    *) die "unknown target '$target'; use sample-go and/or compat-go" ;;
  esac
done
