#!/usr/bin/env bash
# Build plugin-front (tools/plugin-front: the gRPC front every plugin host starts) as a
# static binary at $CACHE_DIR/bin/plugin-front, the path `plugin-operator host` reads from
# PLUGIN_OPERATOR_FRONT in tests and dev runs (the image has it at
# /opt/plugin-operator/bin/plugin-front). Rebuilt only when its sources, this script or the
# Go version change; prints the binary's path on stdout.
#
#   export PLUGIN_OPERATOR_FRONT="$(hack/build-front.sh)"
#
# Uses Go's module proxy and Go's own module and build caches.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap 'step_end failed' EXIT

SRC="$REPO_ROOT/tools/plugin-front"
OUT_DIR="$CACHE_DIR/bin"
OUT="$OUT_DIR/plugin-front"

command -v go >/dev/null || die "Go is not installed; install Go 1.26 or newer (https://go.dev/doc/install)"
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly"

source_hash() {
  {
    go version
    sha256sum < "${BASH_SOURCE[0]}"
    (cd "$SRC" && find . -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod \
      -o -name go.sum \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

mkdir -p "$OUT_DIR"
# Test sessions and people may run this at the same time; one builds, the others wait.
exec 9>"$OUT_DIR/.plugin-front.lock"
flock 9
go_build_front() { (cd "$SRC" && go build -trimpath -ldflags "-s -w" -o "$OUT.tmp.$$" .); }

hash="$(source_hash)"
if [ ! -x "$OUT" ] || [ "$(cat "$OUT.hash" 2>/dev/null)" != "$hash" ]; then
  step_begin plugin-front "building plugin-front ($hash)"
  with_heartbeat "building plugin-front" go_build_front ||
    { rm -f "$OUT.tmp.$$"; die "building tools/plugin-front failed"; }
  # By rename: a host running the old binary keeps running it.
  mv -f "$OUT.tmp.$$" "$OUT"
  echo "$hash" > "$OUT.hash"
  step_end built
else
  step_cached plugin-front
fi
echo "$OUT"
