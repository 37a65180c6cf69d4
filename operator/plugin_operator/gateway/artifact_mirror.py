"""A second copy of the verified plugin archives, kept by every gateway pod.

The operator's cache is one pod: while it restarts (or after, with an empty cache and the
plugin's source down) nothing could start a backend or serve a plugin's frontend. Each gateway
pod therefore mirrors the archives that verified Plugins name in their status
(``status.artifact.sha256``, present with ``status.artifact.url`` only once the operator
verified the archive) into a bounded folder of its own, and serves them as
``GET /artifacts/<sha256>`` on a port of its own, the path the operator uses. Backend pods'
fetch step and a restarted operator fall back to it; every reader checks the digest, so any
copy is safe to use.

The mirror copies only from the configured sources (the operator's cache, the gateway Service
for a peer's copy), never from a URL a Plugin names, keeps only what Plugins use now, and
serves only what it holds for a Plugin that uses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from plugin_operator.models.world import PluginRecord
from plugin_operator.package.fetch import FetchError, download, first_of

from .assets import AssetStore
from .routing import RoutingTable

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
RETRY_SECONDS = 10.0
POLL_SECONDS = 1.0
COPY_TIMEOUT_SECONDS = 10.0


def wanted_archives(plugins: Sequence[PluginRecord]) -> dict[str, int]:
    """sha256 -> size of the archives verified Plugins use now."""
    wanted: dict[str, int] = {}
    for plugin in plugins:
        digest = plugin.artifact.sha256.lower()
        verified = plugin.phase is not None and plugin.phase.verified
        if verified and plugin.artifact.url and _SHA256.match(digest):
            wanted[digest] = max(plugin.artifact.size, wanted.get(digest, 0))
    return wanted


class ArtifactMirror:
    def __init__(self, directory: Path, max_bytes: int, sources: Sequence[str],
                 table: RoutingTable) -> None:
        """``sources``: base URLs serving ``/artifacts/<sha256>``, tried in order."""
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.sources = [s.rstrip("/") for s in sources]
        self.table = table
        self._wanted: dict[str, int] = {}

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256 digest")
        return self.directory / sha256

    def local(self, sha256: str) -> Path | None:
        """The mirrored archive, when this pod holds it for a Plugin that uses it."""
        if sha256 not in self._wanted:
            return None
        path = self.path(sha256)
        return path if path.is_file() else None

    def held(self) -> set[str]:
        return {p.name for p in self.directory.iterdir() if _SHA256.match(p.name)}

    def source_urls(self, sha256: str) -> list[str]:
        return [f"{source}/artifacts/{sha256}" for source in self.sources]

    def sync_once(self) -> list[str]:
        """Drop what no verified Plugin uses, copy what is missing and fits within
        ``max_bytes``. Returns the digests still missing (to try again later)."""
        self._wanted = wanted_archives(list(self.table.plugins.values()))
        held = self.held()
        for digest in held - set(self._wanted):
            self.path(digest).unlink(missing_ok=True)
        for leftover in self.directory.iterdir():
            if leftover.name.startswith(".") and leftover.is_dir():  # an interrupted copy
                shutil.rmtree(leftover, ignore_errors=True)
        used = sum(self.path(d).stat().st_size for d in held & set(self._wanted))
        missing = []
        for digest, size in sorted(self._wanted.items()):
            if digest in held:
                continue
            if used + size > self.max_bytes:
                log.warning("artifact mirror: no room for %s (%d bytes; %d of %d in use); "
                            "raise gateway.artifactMirror.maxBytes", digest, size, used,
                            self.max_bytes)
                continue
            try:
                self._copy(digest)
            except FetchError as exc:
                log.info("artifact mirror: cannot copy %s yet: %s", digest, exc)
                missing.append(digest)
                continue
            used += self.path(digest).stat().st_size
        return missing

    def _copy(self, digest: str) -> None:
        work = Path(tempfile.mkdtemp(prefix=".copy-", dir=self.directory))
        try:
            target = work / "archive"
            first_of(self.source_urls(digest), lambda url: download(
                url, target, digest, self.max_bytes, timeout=COPY_TIMEOUT_SECONDS))
            os.replace(target, self.path(digest))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def run(self) -> None:
        """Follow the routing table: sync when it changed, retry what is missing."""
        seen = -1
        retry_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if self.table.generation != seen or loop.time() >= retry_at:
                seen = self.table.generation
                try:
                    retry = bool(await asyncio.to_thread(self.sync_once))
                except OSError:
                    log.warning("artifact mirror: sync failed", exc_info=True)
                    retry = True
                retry_at = loop.time() + RETRY_SECONDS if retry else float("inf")
            await asyncio.sleep(POLL_SECONDS)

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.get("/artifacts/{sha256}")
        async def get_artifact(request: web.Request) -> web.StreamResponse:
            digest = request.match_info["sha256"]
            if not _SHA256.match(digest):
                raise web.HTTPBadRequest(
                    text="artifact names are SHA-256 digests (64 hex digits)\n")
            path = self.local(digest)
            if path is None:
                raise web.HTTPNotFound(text=f"no artifact {digest} in this gateway's mirror\n")
            return web.FileResponse(path, headers={
                "ETag": f'"{digest}"', "Cache-Control": "public, max-age=31536000, immutable",
                "Content-Type": "application/octet-stream"})

        @routes.get("/healthz")
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        return routes


class MirroredAssetStore(AssetStore):
    """Plugin frontends from the local mirror first, then the operator, then the peers: a
    restarting operator no longer turns frontend files into 502s."""

    def __init__(self, cache_dir: Path, mirror: ArtifactMirror) -> None:
        super().__init__(cache_dir)
        self.mirror = mirror

    def _install(self, url: str, digest: str) -> Path:
        local = self.mirror.local(digest)
        sources = ([str(local)] if local is not None else []) + [url] + [
            u for u in self.mirror.source_urls(digest) if u != url]
        return first_of(sources, lambda source: AssetStore._install(self, source, digest))


async def serve_mirror(mirror: ArtifactMirror, bind: str, port: int) -> web.AppRunner:
    app = web.Application()
    app.add_routes(mirror.routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    return runner
