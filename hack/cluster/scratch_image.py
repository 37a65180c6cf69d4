#!/usr/bin/env python3
"""Write a single-layer, FROM-scratch container image as a `docker save` archive.

    scratch_image.py OUT.tar REFERENCE ENTRYPOINT_JSON SRC=DEST [SRC=DEST ...]

The cluster's pause and CoreDNS images are one static binary each; writing the archive
directly keeps `hack/cluster.sh up` independent of a running Docker daemon. `ctr images
import` reads the result. Timestamps and owners are fixed, so the same inputs always give
the same image digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path


def layer_tar(files: list[tuple[Path, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for source, dest in files:
            info = tarfile.TarInfo(dest.lstrip("/"))
            data = source.read_bytes()
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    out, reference, entrypoint_json = Path(argv[1]), argv[2], argv[3]
    files = []
    for spec in argv[4:]:
        source, _, dest = spec.partition("=")
        if not dest:
            print(f"error: {spec!r} is not SRC=DEST", file=sys.stderr)
            return 2
        files.append((Path(source), dest))
    layer = layer_tar(files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Entrypoint": json.loads(entrypoint_json), "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scratch_image.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [reference], "Layers": ["layer/layer.tar"]}]
    ).encode()
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as archive:
        for name, data in (
            ("layer/layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
