"""The content-addressed archive cache, and the HTTP endpoint plugin pods fetch it from.

Archives are stored under their SHA-256 and served as ``GET /artifacts/<sha256>``; a pod's
init step checks the digest again, so the network between them needs no trust. Only archives
that passed verification for some Plugin are served: a rejected archive, or one still being
checked, answers 404. The cache is bounded: :class:`ArtifactCollector` evicts the archives no
Plugin uses (``maxBytes``), oldest first.

Plugins delivered in images come in the other way: a pod the operator started packs the
plugin folder and sends it as ``PUT /uploads/<token>``. Only tokens the operator handed out
are accepted, each once, and what arrives is verified like any other archive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import Gauge

from plugin_operator.controller.restart_reports import (
    MAX_REPORT_BYTES,
    ReportError,
    RestartReports,
)
from plugin_operator.models.status import Phase, PluginStatus

_SHA256 = re.compile(r"^[a-f0-9]{64}$")
Owner = TypeVar("Owner")
log = logging.getLogger(__name__)
# An archive no Plugin names is kept this long (it may be on its way through verification,
# or a Plugin's status may not name it yet), unless the cache is over its bound.
UNUSED_GRACE_SECONDS = 600.0
COLLECT_INTERVAL_SECONDS = 60.0

# What the last collection found (the operator has one store); alerts compare the bytes in
# use, which no eviction can free, with the bound.
CACHE_BYTES = Gauge("plugin_operator_artifact_cache_bytes",
                    "Bytes of archives in the artifact cache after its last collection.")
CACHE_IN_USE_BYTES = Gauge("plugin_operator_artifact_cache_in_use_bytes",
                           "Of those, the bytes of archives that Plugins use (never evicted).")
CACHE_MAX_BYTES = Gauge("plugin_operator_artifact_cache_max_bytes",
                        "The bound beyond which unused archives are evicted (0: none).")


class ArtifactStore:
    def __init__(self, directory: Path, max_bytes: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        """``max_bytes``: the bound :meth:`collect` keeps archives within (0: none)."""
        self.directory = directory
        self.archives = directory / "archives"
        self.archives.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.clock = clock
        CACHE_MAX_BYTES.set(max_bytes)
        # Digests verified for some Plugin since this process started: the only ones served.
        # (A persistent cache's archives are served again once a reconcile re-verifies them.)
        self._servable: set[str] = set()

    def mark_verified(self, sha256: str) -> None:
        if self.has(sha256):
            self._servable.add(sha256)

    def servable(self, sha256: str) -> bool:
        return sha256 in self._servable and self.has(sha256)

    def touch(self, sha256: str) -> None:
        """Record a use: eviction goes oldest first."""
        try:
            os.utime(self.path(sha256))
        except OSError:
            return

    def remove(self, sha256: str) -> None:
        self._servable.discard(sha256)
        self.path(sha256).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        return [p.name for p in self.archives.iterdir() if _SHA256.match(p.name)]

    def collect(self, in_use: Collection[str]) -> list[str]:
        """Evict archives that no Plugin uses: those unused for UNUSED_GRACE_SECONDS, then,
        while the cache is over ``max_bytes``, the oldest unused ones. Archives in use are
        never evicted (a cache too small for them is logged). Returns the evicted digests."""
        now = self.clock()
        entries = []
        for digest in self.digests():
            try:
                stat = self.path(digest).stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, digest, stat.st_size))
        entries.sort()
        total = sum(size for _, _, size in entries)
        evicted = []
        for mtime, digest, size in entries:
            if digest in in_use:
                continue
            if now - mtime >= UNUSED_GRACE_SECONDS or (self.max_bytes and
                                                       total > self.max_bytes):
                self.remove(digest)
                total -= size
                evicted.append(digest)
        CACHE_BYTES.set(total)
        CACHE_IN_USE_BYTES.set(sum(size for _, digest, size in entries if digest in in_use))
        if self.max_bytes and total > self.max_bytes:
            log.warning("the archives Plugins use take %d bytes, more than the artifact cache's "
                        "bound of %d; raise operator.artifactCache.maxBytes", total,
                        self.max_bytes)
        self._clean_leftovers(now)
        return evicted

    def _clean_leftovers(self, now: float) -> None:
        """Scratch folders and partial files a crash left behind."""
        for folder, prefixes in ((self.directory, (".work-",)),
                                 (self.archives, (".incoming-", ".archive.fetch-"))):
            for entry in folder.iterdir():
                if not entry.name.startswith(prefixes):
                    continue
                try:
                    if now - entry.stat().st_mtime < UNUSED_GRACE_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

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


def digests_in_use(plugins: Iterable[Mapping[str, Any]]) -> set[str]:
    """The archives Plugins use: the one each Plugin's status names and the one its spec pins,
    except for rejected Plugins (nothing runs for them)."""
    used: set[str] = set()
    for plugin in plugins:
        status = PluginStatus.parse(plugin.get("status"))
        if status.phase is Phase.REJECTED:
            continue
        recorded = (status.artifact.sha256 if status.artifact else "").lower()
        pinned = str(((plugin.get("spec") or {}).get("source") or {}).get("sha256") or "")
        pinned = pinned.strip().lower().removeprefix("sha256:")
        used.update(d for d in (recorded, pinned) if _SHA256.match(d))
    return used


class ArtifactCollector:
    """Keeps the store within its bound, on a timer: asks which digests Plugins use, evicts
    the rest (see :meth:`ArtifactStore.collect`), then tells ``on_evicted``."""

    def __init__(self, store: ArtifactStore,
                 in_use: Callable[[], Awaitable[Collection[str]]],
                 on_evicted: Callable[[list[str]], None] = lambda digests: None,
                 interval: float = COLLECT_INTERVAL_SECONDS) -> None:
        self.store = store
        self.in_use = in_use
        self.on_evicted = on_evicted
        self.interval = interval

    async def collect_once(self) -> list[str]:
        used = await self.in_use()
        evicted = await asyncio.to_thread(self.store.collect, used)
        if evicted:
            log.info("artifact cache: evicted %d archive(s) no Plugin uses", len(evicted))
            self.on_evicted(evicted)
        return evicted

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.collect_once()
            except Exception:
                log.warning("artifact cache collection failed", exc_info=True)


def artifact_routes(store: ArtifactStore, desk: UploadDesk[Any] | None = None,
                    max_upload_bytes: int = 0,
                    reports: RestartReports | None = None) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/reports/pods/{namespace}/{pod}")
    async def post_report(request: web.Request) -> web.Response:
        if reports is None:
            raise web.HTTPNotFound(text="this operator takes no restart reports\n")
        if request.content_length is not None and request.content_length > MAX_REPORT_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_REPORT_BYTES,
                                                actual_size=request.content_length)
        body = await request.content.read(MAX_REPORT_BYTES + 1)
        if len(body) > MAX_REPORT_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_REPORT_BYTES,
                                                actual_size=len(body))
        try:
            answer = await reports.accept(request.match_info["namespace"],
                                          request.match_info["pod"], request.remote or "", body)
        except ReportError as exc:
            return web.Response(status=exc.status, text=f"{exc}\n")
        return web.Response(text=answer)

    @routes.get("/artifacts/{sha256}")
    async def get_artifact(request: web.Request) -> web.StreamResponse:
        digest = request.match_info["sha256"]
        if not _SHA256.match(digest):
            raise web.HTTPBadRequest(text="artifact names are SHA-256 digests (64 hex digits)\n")
        path = store.path(digest)
        if not store.servable(digest):
            # Missing, not verified (yet) or rejected: the same answer, so that a pod's fetch
            # tries its other sources.
            raise web.HTTPNotFound(text=f"no verified artifact {digest} in this operator's "
                                        "cache\n")
        store.touch(digest)
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
