#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) with the package and its dev tools.
# Quick when nothing changed: it reinstalls only when pyproject.toml or the protos change.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap 'step_end failed' EXIT

VENV="$REPO_ROOT/.venv"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$PYTHON is $("$PYTHON" --version 2>&1); plugin-operator needs Python 3.11 or newer"
stamp="$VENV/.installed"
want="$(cd "$REPO_ROOT" && find pyproject.toml hatch_build.py operator/plugin_operator/protocol/proto \
  -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  step_cached "Python environment (.venv)"
  exit 0
fi
step_begin "Python environment (.venv)" "preparing the Python environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create a virtualenv; install python3-venv"
fi
log "installing plugin-operator and its dev tools into $VENV"
with_heartbeat "installing into $VENV" "$VENV/bin/pip" install --quiet --upgrade pip
# grafana-client (a test dependency) pulls in urllib3-future, whose wheel replaces urllib3
# and breaks requests; built from source with this variable it installs beside urllib3.
with_heartbeat "installing into $VENV" env URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future \
  "$VENV/bin/pip" install --quiet -e "${REPO_ROOT}[dev]"
echo "$want" > "$stamp"
step_end built
