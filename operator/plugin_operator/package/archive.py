"""Extract a plugin archive (zip or tar, optionally compressed) defensively and atomically.

Nothing is written outside a private staging directory next to the destination; it is
renamed onto the destination only when the whole archive extracted within the limits, and
removed on any failure. Refused: absolute paths, ``..``, backslashes, duplicate entries,
devices and FIFOs, links whose target leaves the archive, and archives beyond the
:class:`ExtractionLimits` (size, file count, compression ratio).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from plugin_operator.package.plugin_json import PLUGIN_JSON

MiB = 1024 * 1024
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The archive is unsafe, corrupt or over a limit; nothing was extracted."""


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds on what an archive may expand to. Raise them in the operator's configuration
    (``packageLimits``) or with the matching ``--max-*`` option of ``plugin-operator fetch``.

    Compression ratios are only checked for content larger than ``ratio_floor_bytes``: small
    files of repeated text compress far better than 100:1 and are harmless.
    """

    max_total_bytes: int = 512 * MiB
    max_files: int = 10_000
    max_file_ratio: float = 100.0
    max_total_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * MiB

    def over_size(self, total: int) -> ArchiveError:
        return ArchiveError(
            f"archive expands to more than {self.max_total_bytes} bytes (limit "
            "max_total_bytes); if the plugin really is this large, raise the limit "
            "(--max-total-bytes / packageLimits.maxTotalBytes)")

    def check_ratio(self, name: str, expanded: int, compressed: int, limit: float,
                    option: str) -> None:
        if expanded <= self.ratio_floor_bytes:
            return
        if expanded > limit * max(compressed, 1):
            raise ArchiveError(
                f"{name} expands {expanded} bytes from {compressed} compressed "
                f"(more than {limit:g}:1, limit {option}); this looks like a zip bomb. If the "
                f"content is genuine, raise the limit (--{option.replace('_', '-')})")


@dataclass(frozen=True)
class _Entry:
    name: str  # normalised relative POSIX path
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int = 0o644
    size: int = 0
    compressed_size: int | None = None
    link_target: str = ""


def _safe_name(raw: str) -> str:
    if "\x00" in raw:
        raise ArchiveError(f"archive entry {raw!r} has a NUL byte in its name")
    if "\\" in raw:
        raise ArchiveError(f"archive entry {raw!r} uses backslashes; plugin archives use '/'")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ArchiveError(f"archive entry {raw!r} has an absolute path; entries must be "
                           "relative to the archive's top folder")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive entry {raw!r} climbs out of the archive with '..'")
    if not parts:
        raise ArchiveError(f"archive entry {raw!r} has an empty name")
    return "/".join(parts)


def _check_link_target(name: str, target: str) -> str:
    if not target or target.startswith("/") or "\\" in target:
        raise ArchiveError(f"link {name} -> {target!r} must point to a relative path inside "
                           "the plugin")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise ArchiveError(f"link {name} -> {target!r} points outside the plugin directory")
    return resolved


def _file_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def _zip_entries(archive: zipfile.ZipFile) -> Iterator[tuple[_Entry, zipfile.ZipInfo]]:
    for info in archive.infolist():
        name = _safe_name(info.filename)
        unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
        file_type = stat.S_IFMT(unix_mode)
        if info.is_dir() or file_type == stat.S_IFDIR:
            yield _Entry(name, "dir"), info
        elif file_type == stat.S_IFLNK:
            if info.file_size > 4096:
                raise ArchiveError(f"symlink {name} has an implausibly long target")
            target = archive.read(info).decode("utf-8", "replace")
            yield _Entry(name, "symlink", link_target=target), info
        elif file_type in (0, stat.S_IFREG):
            yield _Entry(name, "file", _file_mode(unix_mode), info.file_size,
                         info.compress_size), info
        else:
            raise ArchiveError(f"archive entry {name} is a device, FIFO or socket; plugin "
                               "archives hold only files, directories and links")


def _tar_entry(member: tarfile.TarInfo) -> _Entry:
    name = _safe_name(member.name)
    if member.isdir():
        return _Entry(name, "dir")
    if member.issym():
        return _Entry(name, "symlink", link_target=member.linkname)
    if member.islnk():
        return _Entry(name, "hardlink", link_target=member.linkname)
    if member.isreg():
        return _Entry(name, "file", _file_mode(member.mode), member.size)
    raise ArchiveError(f"archive entry {name} is a device, FIFO or socket; plugin archives "
                       "hold only files, directories and links")


class _Writer:
    """Writes entries under ``root`` while enforcing the limits on what is actually written."""

    def __init__(self, root: Path, limits: ExtractionLimits) -> None:
        self.root = root
        self.limits = limits
        self.total = 0
        self.count = 0
        self.seen: dict[str, str] = {}
        self.symlinks: list[_Entry] = []

    def admit(self, entry: _Entry) -> None:
        self.count += 1
        if self.count > self.limits.max_files:
            raise ArchiveError(
                f"archive has more than {self.limits.max_files} entries (limit max_files); "
                "raise it (--max-files / packageLimits.maxFiles) if the plugin needs more")
        previous = self.seen.get(entry.name)
        if previous is not None and not (previous == entry.kind == "dir"):
            raise ArchiveError(f"archive entry {entry.name} appears more than once")
        for prefix in _prefixes(entry.name):
            if self.seen.get(prefix, "dir") != "dir":
                raise ArchiveError(f"archive entry {entry.name} is inside {prefix}, which is "
                                   "not a directory")
        self.seen[entry.name] = entry.kind

    def path(self, name: str) -> Path:
        return self.root.joinpath(*name.split("/"))

    def directory(self, entry: _Entry) -> None:
        self.path(entry.name).mkdir(parents=True, exist_ok=True)

    def file(self, entry: _Entry, source: IO[bytes]) -> None:
        target = self.path(entry.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        # O_EXCL|O_NOFOLLOW: never write through anything already there.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                self.total += len(chunk)
                if self.total > self.limits.max_total_bytes:
                    raise self.limits.over_size(self.total)
                if written > entry.size:
                    raise ArchiveError(f"{entry.name} holds more data than its header declares "
                                       f"({entry.size} bytes); the archive is forged")
                if entry.compressed_size is not None:
                    self.limits.check_ratio(entry.name, written, entry.compressed_size,
                                            self.limits.max_file_ratio, "max_file_ratio")
                out.write(chunk)
        if written != entry.size:
            raise ArchiveError(f"{entry.name} is shorter than declared; the archive is "
                               "truncated or corrupt")
        target.chmod(entry.mode)

    def hardlink(self, entry: _Entry) -> None:
        source_name = _safe_name(entry.link_target)
        if self.seen.get(source_name) != "file":
            raise ArchiveError(f"hard link {entry.name} -> {entry.link_target!r} must point to "
                               "a regular file earlier in the archive")
        target = self.path(entry.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(source_name), target, follow_symlinks=False)
        target.chmod(self.path(source_name).stat().st_mode & 0o777)
        self.seen[entry.name] = "file"

    def finish_symlinks(self, plugin_root: Path) -> None:
        """Create links last, so no file is ever written through one, then re-check them."""
        for entry in self.symlinks:
            link = self.path(entry.name)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.link_target, link)
        real_root = Path(os.path.realpath(plugin_root))
        for entry in self.symlinks:
            resolved = Path(os.path.realpath(self.path(entry.name)))
            if resolved != real_root and real_root not in resolved.parents:
                raise ArchiveError(f"link {entry.name} -> {entry.link_target!r} resolves "
                                   "outside the plugin directory")


def _prefixes(name: str) -> Iterator[str]:
    parts = name.split("/")
    for index in range(1, len(parts)):
        yield "/".join(parts[:index])


def _extract_zip(path: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(path) as archive:
        compressed_total = path.stat().st_size
        declared = sum(info.file_size for info in archive.infolist())
        if declared > writer.limits.max_total_bytes:
            raise writer.limits.over_size(declared)
        writer.limits.check_ratio(path.name, declared, compressed_total,
                                  writer.limits.max_total_ratio, "max_total_ratio")
        for entry, info in _zip_entries(archive):
            writer.admit(entry)
            if entry.kind == "dir":
                writer.directory(entry)
            elif entry.kind == "symlink":
                _check_link_target(entry.name, entry.link_target)
                writer.symlinks.append(entry)
            else:
                writer.limits.check_ratio(entry.name, entry.size, info.compress_size,
                                          writer.limits.max_file_ratio, "max_file_ratio")
                with archive.open(info) as source:
                    writer.file(entry, source)


def _extract_tar(path: Path, writer: _Writer) -> None:
    compressed_total = path.stat().st_size
    with tarfile.open(path, mode="r:*") as archive:
        for member in archive:
            entry = _tar_entry(member)
            writer.admit(entry)
            if entry.kind == "dir":
                writer.directory(entry)
            elif entry.kind == "symlink":
                _check_link_target(entry.name, entry.link_target)
                writer.symlinks.append(entry)
            elif entry.kind == "hardlink":
                writer.hardlink(entry)
            else:
                source = archive.extractfile(member)
                if source is None:
                    raise ArchiveError(f"cannot read {entry.name} from the archive")
                with source:
                    writer.file(entry, source)
            writer.limits.check_ratio(path.name, writer.total, compressed_total,
                                      writer.limits.max_total_ratio, "max_total_ratio")


def plugin_root_of(extracted: Path) -> Path:
    """Grafana's layout: plugin.json at the top, or in the archive's single top folder."""
    if (extracted / PLUGIN_JSON).is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith("__MACOSX")]
    folders = [p for p in entries if p.is_dir() and not p.is_symlink()]
    if len(entries) == 1 and folders and (folders[0] / PLUGIN_JSON).is_file():
        return folders[0]
    raise ArchiveError("the archive is not a plugin: expected plugin.json at its top or in "
                       "its single top-level folder (Grafana's layout: <plugin-id>/plugin.json)")


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_archive(archive: Path, dest: Path,
                    limits: ExtractionLimits | None = None) -> Path:
    """Extract the plugin in ``archive`` so that ``dest`` becomes the plugin directory.

    ``dest`` must not exist or be an empty directory. Returns ``dest``.
    """
    limits = limits or ExtractionLimits()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"{dest} already exists and is not an empty directory; remove it "
                           "or choose another destination")
    with _staging(dest) as staging:
        content = staging / "content"
        content.mkdir()
        writer = _Writer(content, limits)
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, writer)
            else:
                _extract_tar(archive, writer)
            root = plugin_root_of(content)
            writer.finish_symlinks(root)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error,
                NotImplementedError) as exc:
            raise ArchiveError(f"{archive.name} is not a readable zip or tar archive, or it "
                               f"is truncated: {exc}") from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and exc.filename == str(archive):
                raise ArchiveError(f"archive {archive} does not exist") from None
            raise ArchiveError(f"cannot extract {archive.name}: {exc}") from None
        os.replace(root, dest)
    return dest
