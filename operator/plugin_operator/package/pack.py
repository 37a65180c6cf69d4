"""Pack a plugin directory into an archive with Grafana's layout, and hand it over by HTTP.

Used where a plugin arrives as a folder rather than a zip (a plugin delivered in an image):
the folder becomes the same kind of archive the rest of the pipeline verifies and serves.
The zip is deterministic (sorted names, fixed times, modes kept), so the same folder
always gives the same SHA-256.
"""

from __future__ import annotations

import io
import os
import stat
import urllib.request
import zipfile
from pathlib import Path

from plugin_operator.package.archive import ExtractionLimits
from plugin_operator.package.fetch import open_url
from plugin_operator.package.plugin_json import PluginJsonError, load_plugin_json

_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackError(ValueError):
    """The folder cannot be packed as a plugin."""


def pack_directory(plugin_dir: Path, limits: ExtractionLimits | None = None) -> bytes:
    """The zip of ``plugin_dir`` under one top folder named after its plugin id."""
    limits = limits or ExtractionLimits()
    try:
        plugin = load_plugin_json(plugin_dir)
    except PluginJsonError as exc:
        raise PackError(f"{plugin_dir} is not a plugin folder: {exc}") from None
    entries = sorted(_walk(plugin_dir))
    if len(entries) > limits.max_files:
        raise PackError(f"{plugin_dir} holds {len(entries)} entries, more than the "
                        f"{limits.max_files} a plugin may have (max_files)")
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in entries:
            path = plugin_dir / relative
            mode = path.lstat().st_mode
            info = zipfile.ZipInfo(f"{plugin.id}/{relative}", date_time=_EPOCH)
            info.create_system = 3  # Unix, so the modes below mean what they say
            if stat.S_ISDIR(mode):
                info.filename += "/"
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                archive.writestr(info, b"")
                continue
            if stat.S_ISLNK(mode):
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, os.readlink(path))
                continue
            if not stat.S_ISREG(mode):
                raise PackError(f"{relative} in {plugin_dir} is neither a file, a folder "
                                "nor a symbolic link")
            total += path.stat().st_size
            if total > limits.max_total_bytes:
                raise PackError(f"{plugin_dir} is larger than {limits.max_total_bytes} bytes "
                                "(max_total_bytes)")
            info.external_attr = (stat.S_IFREG | stat.S_IMODE(mode)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _walk(root: Path) -> list[str]:
    found = []
    for directory, folders, files in os.walk(root):
        base = Path(directory).relative_to(root)
        for name in folders + files:
            found.append((base / name).as_posix())
    return found


def upload(data: bytes, url: str, timeout: float) -> str:
    """PUT the archive to ``url``; returns the server's answer. Refusals (4xx) are final,
    unreachable servers and server errors are ``transient``."""
    request = urllib.request.Request(url, data=data, method="PUT", headers={
        "Content-Type": "application/zip", "User-Agent": "plugin-operator"})
    with open_url(request, timeout, f"uploading to {url}") as response:
        return bytes(response.read()).decode("utf-8", errors="replace").strip()
