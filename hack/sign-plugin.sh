#!/usr/bin/env bash
# Sign a plugin directory with a local P-521 test key (writes MANIFEST.txt).
#   hack/sign-plugin.sh PLUGIN_DIR|ARCHIVE [--output SIGNED.zip] [--key FILE] [--type private] [--root-url URL ...]
# An archive is signed into a new zip with Grafana's layout (default: replaces the archive).
# Default key: $CACHE_DIR/signing/test-signer.asc (created on first use); its public half
# (test-signer.pub.asc) is what `plugin-operator verify --trusted-key` needs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# -ge 1 ]] || die "usage: $0 PLUGIN_DIR|ARCHIVE [--output FILE] [--key FILE] [--type TYPE] [--root-url URL ...]"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
args=("$@")
if [[ " ${args[*]} " != *" --key "* ]]; then
  mkdir -p "$CACHE_DIR/signing"
  args+=(--key "$CACHE_DIR/signing/test-signer.asc" --generate-key)
fi
if [[ " ${args[*]} " != *" --root-url "* ]]; then
  args+=(--root-url "http://localhost:3000/")
fi
exec "$PYTHON" -m plugin_operator.signatures.signing "${args[@]}"
