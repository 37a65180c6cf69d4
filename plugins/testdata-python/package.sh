#!/usr/bin/env bash
# Package this plugin as a zip with Grafana's layout: one top folder named after the id.
#   plugins/testdata-python/package.sh [OUTPUT_DIR]   (default: plugins/testdata-python/dist)
# Prints the zip's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/dist}"
id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$here/plugin.json")"
version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["info"]["version"])' "$here/plugin.json")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$id" "$out"
cp "$here/plugin.json" "$here/testdata_plugin.py" "$here"/gpx_testdata_python_linux_* "$stage/$id/"
chmod 0755 "$stage/$id"/gpx_testdata_python_linux_*
zip_path="$out/$id-$version.zip"
rm -f "$zip_path"
(cd "$stage" && python3 - "$zip_path" "$id" <<'PY'
import os, sys, zipfile
target, top = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read())
PY
)
echo "$zip_path"
