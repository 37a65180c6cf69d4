# shellcheck shell=bash
# Shared settings for the hack/ scripts. Source it; do not run it.

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# Everything that is expensive to rebuild lives here, keyed by version,
# so a second run (or CI on the same machine) reuses it.
CACHE_DIR="${PLUGIN_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plugin-operator}"
K8S_BIN_DIR="$CACHE_DIR/bin/kubernetes-$K8S_VERSION"
ETCD_BIN_DIR="$CACHE_DIR/bin/etcd-$ETCD_VERSION"
TOOLS_BIN_DIR="$CACHE_DIR/bin/tools"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
