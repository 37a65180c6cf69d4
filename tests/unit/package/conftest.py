"""Builders for plugin archives, honest and malicious, written with the standard library."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

PLUGIN_JSON = b'{"id": "acme-test-datasource", "type": "datasource", "info": {"version": "1.0.0"}}'


def zip_bytes(entries: list[tuple[str, bytes, int]]) -> bytes:
    """Entries of (name, data, unix mode incl. file type); mode 0 means a plain file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.create_system = 3
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def write_zip(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
               link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    return info


def honest_entries(top: str = "acme-test-datasource") -> list[tuple[str, bytes, int]]:
    return [(f"{top}/", b"", stat.S_IFDIR | 0o755),
            (f"{top}/plugin.json", PLUGIN_JSON, stat.S_IFREG | 0o644),
            (f"{top}/gpx_test_linux_amd64", b"\x7fELF", stat.S_IFREG | 0o755),
            (f"{top}/img/logo.svg", b"<svg/>", stat.S_IFREG | 0o644)]
