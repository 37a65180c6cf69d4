"""The content-addressed archive cache, and the HTTP endpoint plugin pods fetch it from.

Archives are stored under their SHA-256 and served as ``GET /artifacts/<sha256>``; a pod's
init step checks the digest again, so the network between them needs no trust.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from aiohttp import web

_SHA256 = re.compile(r"^[a-f0-9]{64}$")


class ArtifactStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.archives = directory / "archives"
        self.archives.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256 digest")
        return self.archives / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.is_file():
            fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=self.archives)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, target)
        return digest, len(data)

    def adopt(self, downloaded: Path, sha256: str) -> None:
        """Move a file whose digest the caller has checked into the store."""
        os.replace(downloaded, self.path(sha256))

    def scratch(self) -> Path:
        """A temporary directory inside the store's file system (renames stay atomic)."""
        return Path(tempfile.mkdtemp(prefix=".work-", dir=self.directory))


def artifact_routes(store: ArtifactStore) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/artifacts/{sha256}")
    async def get_artifact(request: web.Request) -> web.StreamResponse:
        digest = request.match_info["sha256"]
        if not _SHA256.match(digest):
            raise web.HTTPBadRequest(text="artifact names are SHA-256 digests (64 hex digits)\n")
        path = store.path(digest)
        if not path.is_file():
            raise web.HTTPNotFound(text=f"no artifact {digest} in this operator's cache\n")
        # Content-addressed: the bytes behind a name never change.
        return web.FileResponse(path, headers={
            "ETag": f'"{digest}"', "Cache-Control": "public, max-age=31536000, immutable",
            "Content-Type": "application/octet-stream"})

    return routes
