#!/usr/bin/env bash
# Write the chart's Grafana dashboards (charts/plugin-operator/dashboards/*.json) from their
# code, dashboards/generate.py (Grafana's grafana-foundation-sdk, a dev dependency). Run it
# after changing that code; tests/unit/dashboards fails while the files and the code differ.
#
#   hack/gen-dashboards.sh           # rewrite the files
#   hack/gen-dashboards.sh --check   # exit 1 if they are out of date
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$HACK_DIR/python-env.sh" >&2
cd "$REPO_ROOT"
"$REPO_ROOT/.venv/bin/python" -m dashboards.generate "$@"
