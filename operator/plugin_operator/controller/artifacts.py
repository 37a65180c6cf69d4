"""The content-addressed archive cache, and the HTTP endpoint plugin pods fetch it from.

Archives are stored under their SHA-256 and served as ``GET /artifacts/<sha256>``; a pod's
init step checks the digest again, so the network between them needs no trust.

Plugins delivered in images come in the other way: a pod the operator started packs the
plugin folder and sends it as ``PUT /uploads/<token>``. Only tokens the operator handed out
are accepted, each once, and what arrives is verified like any other archive.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web

_SHA256 = re.compile(r"^[a-f0-9]{64}$")
Owner = TypeVar("Owner")


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


@dataclass(frozen=True)
class Upload:
    sha256: str
    size: int


class UploadDesk(Generic[Owner]):
    """The uploads the operator is waiting for, by token, and what arrived for them.

    Kept in memory: after an operator restart the tokens in running unpack pods are
    unknown, those pods are replaced, and their uploads are refused rather than trusted.
    """

    def __init__(self, on_arrival: Callable[[Owner], None] = lambda owner: None) -> None:
        self._owners: dict[str, Owner] = {}
        self._arrived: dict[str, Upload] = {}
        self._on_arrival = on_arrival

    def expect(self, owner: Owner) -> str:
        """A new single-use token; ``owner`` (a work-queue key) hears when it is used."""
        token = secrets.token_urlsafe(24)
        self._owners[token] = owner
        return token

    def knows(self, token: str) -> bool:
        return token in self._owners

    def arrived(self, token: str) -> Upload | None:
        return self._arrived.get(token)

    def close(self, token: str) -> None:
        self._owners.pop(token, None)
        self._arrived.pop(token, None)

    def receive(self, token: str, upload: Upload) -> bool:
        owner = self._owners.get(token)
        if owner is None or token in self._arrived:
            return False
        self._arrived[token] = upload
        self._on_arrival(owner)
        return True


def artifact_routes(store: ArtifactStore, desk: UploadDesk[Any] | None = None,
                    max_upload_bytes: int = 0) -> web.RouteTableDef:
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

    @routes.put("/uploads/{token}")
    async def put_upload(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if desk is None or not desk.knows(token) or desk.arrived(token) is not None:
            raise web.HTTPForbidden(text="this upload token is unknown or used already; the "
                                         "operator replaces the pod that holds it\n")
        if request.content_length is not None and request.content_length > max_upload_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_upload_bytes,
                                                actual_size=request.content_length)
        data = await request.read()
        digest, size = store.put_bytes(data)
        if not desk.receive(token, Upload(digest, size)):  # another upload won meanwhile
            raise web.HTTPForbidden(text="this upload token was used already\n")
        return web.Response(status=201, text=f"stored as {digest}\n")

    return routes
