#!/usr/bin/env bash
# Build one of the gateway benchmark's Go programs, cached by a hash of its sources under
# $CACHE_DIR/<tool>/<hash>/<tool>, and print <TOOL>=<path>:
#   loadgen    the open-loop load generator (benchmarks/gateway/loadgen)
#   dataplane  what a Go gateway would cost per query (benchmarks/gateway/dataplane; a
#              measurement, not a product component)
# Uses Go's module proxy and Go's own caches; idempotent.
set -euo pipefail
source "$(cd "$(dirname "$0")/../.." && pwd)/hack/lib.sh"
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || die "the Go toolchain is needed (https://go.dev/dl/); put go on PATH"

tool=${1:?usage: build-go-tool.sh loadgen|dataplane}
case "$tool" in loadgen|dataplane) ;; *) die "unknown tool $tool: loadgen or dataplane" ;; esac
src="$REPO_ROOT/benchmarks/gateway/$tool"
hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-16)
out="$CACHE_DIR/$tool/$hash"
if [ ! -x "$out/$tool" ]; then
  mkdir -p "$out.tmp"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/$tool" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "${tool^^}=$out/$tool"
