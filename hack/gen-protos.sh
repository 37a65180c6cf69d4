#!/usr/bin/env bash
# Regenerate plugin_operator/protocol/generated/ from the .proto files (the build does
# this too; use it after editing a .proto without reinstalling).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" hatch_build.py
