"""A plugin's frontend files (module.js and the rest), served from its verified archive.

The archive comes from the operator's cache (``status.artifact.url``), is checked against
``status.artifact.sha256`` and extracted with the package module's safe extraction, once
per digest; files are then served with an ETag derived from that digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from plugin_operator.models.world import PluginRecord
from plugin_operator.package.archive import ArchiveError
from plugin_operator.package.fetch import FetchError, install

from .errors import GatewayError

# Digest-addressed: a file's bytes never change for a given archive.
CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True)
class Asset:
    path: Path
    etag: str
    content_type: str


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative path inside the plugin, refusing anything that leaves it."""
    parts = PurePosixPath(path.lstrip("/")).parts
    if not parts or any(p in ("..", "") or "\\" in p or "\0" in p for p in parts):
        raise GatewayError(404, "Plugin file not found", "plugin.fileNotFound")
    return PurePosixPath(*parts)


class AssetStore:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._installs: dict[str, asyncio.Task[Path]] = {}

    async def plugin_dir(self, plugin: PluginRecord) -> Path:
        if not plugin.artifact.url or not plugin.artifact.sha256:
            raise GatewayError(404, f"Plugin {plugin.key} has no verified artifact yet "
                                    "(status.artifact is empty)", "plugin.noArtifact")
        digest = plugin.artifact.sha256.lower()
        task = self._installs.get(digest)
        if task is None or (task.done() and task.exception() is not None):
            task = self._installs[digest] = asyncio.create_task(
                asyncio.to_thread(self._install, plugin.artifact.url, digest))
        try:
            return await asyncio.shield(task)
        except (FetchError, ArchiveError, OSError) as exc:
            raise GatewayError(502, f"cannot fetch the frontend of Plugin {plugin.key}: {exc}",
                               "plugin.artifactUnavailable") from exc

    def _install(self, url: str, digest: str) -> Path:
        dest = self.cache_dir / digest
        if not dest.is_dir():
            install(url, dest, sha256=digest)
        roots = [p for p in dest.iterdir() if p.is_dir()] if not (dest / "plugin.json").exists() \
            else [dest]
        if len(roots) != 1:
            raise FetchError(f"archive {digest} has no single plugin folder")
        return roots[0]

    async def asset(self, plugin: PluginRecord, path: str) -> Asset:
        relative = safe_relative(path)
        root = await self.plugin_dir(plugin)
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
            raise GatewayError(404, "Plugin file not found", "plugin.fileNotFound")
        content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        if candidate.suffix in (".js", ".mjs"):
            content_type = "application/javascript"
        tag = hashlib.sha256(f"{plugin.artifact.sha256}/{relative}".encode()).hexdigest()
        etag = f'"{tag[:32]}"'
        return Asset(candidate, etag, content_type)
