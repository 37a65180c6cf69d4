#!/usr/bin/env bash
# Build the gateway benchmark's open-loop load generator (benchmarks/gateway/loadgen), cached
# by a hash of its sources under $CACHE_DIR/loadgen/<hash>/loadgen. Prints LOADGEN=<path>.
# Uses Go's module proxy and Go's own caches; idempotent.
set -euo pipefail
source "$(cd "$(dirname "$0")/../.." && pwd)/hack/lib.sh"
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || die "the Go toolchain is needed (https://go.dev/dl/); put go on PATH"

src="$REPO_ROOT/benchmarks/gateway/loadgen"
hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
out="$CACHE_DIR/loadgen/$hash"
if [ ! -x "$out/loadgen" ]; then
  mkdir -p "$out.tmp"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/loadgen" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "LOADGEN=$out/loadgen"
