"""An offline bundle: a plugin catalog on disk, as ``plugin-operator mirror`` writes it.

    index.json                                  what the bundle holds (one entry per archive)
    plugins/<id>/versions/index.json            answers GET <base>/<id>/versions
    plugins/<id>/versions/<version>/download    answers GET <base>/<id>/versions/<version>/download

``<bundle>/plugins`` is a catalog base URL (``file:///.../plugins``, or the same tree behind
any HTTP server that answers a folder with its index.json), so the operator resolves
``spec.source.catalog`` against a bundle exactly as against grafana.com. A bundle grows:
mirroring into an existing one adds to what it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin_operator.package.catalog import bundle_archive_path, bundle_versions_path

PLUGINS = "plugins"
INDEX = "index.json"
FORMAT = 1
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_SAFE_PART = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]*$")


class BundleError(ValueError):
    """The bundle folder cannot be read or written as one."""


# index.json's field names, by attribute of BundleEntry
_FIELDS = {"plugin_id": "pluginId", "version": "version", "package": "package",
           "sha256": "sha256", "md5": "md5", "size": "size", "source": "source",
           "signature": "signature", "signature_type": "signatureType",
           "signed_by": "signedBy"}


@dataclass(frozen=True)
class BundleEntry:
    """One archive of the bundle and what was checked of it when it was mirrored."""

    plugin_id: str
    version: str
    package: str  # the catalog's package key: linux-amd64 or any
    sha256: str
    md5: str
    size: int
    source: str  # where it was downloaded from
    signature: str  # valid, or unsigned for an id allowed to be
    signature_type: str
    signed_by: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> BundleEntry:
        return cls(**{attribute: raw[key] for attribute, key in _FIELDS.items()})

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attribute) for attribute, key in _FIELDS.items()}


def version_order(version: str) -> tuple[Any, ...]:
    """A sort key: newer semantic versions sort higher, a release above its pre-releases."""
    match = _SEMVER.match(version)
    if not match:
        return (-1, version)
    major, minor, patch, pre = match.groups()
    pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in (pre or "").split(
        ".")) if pre else ()
    return (int(major), int(minor), int(patch), pre is None, pre_key)


def check_part(value: str, what: str) -> str:
    """A plugin id or version that can name a folder of the bundle (and a URL path part)."""
    if not _SAFE_PART.match(value) or ".." in value:
        raise BundleError(f"{what} {value!r} cannot name a folder of the bundle")
    return value


class Bundle:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[tuple[str, str], BundleEntry] = {}
        index = root / INDEX
        if index.is_file():
            try:
                data = json.loads(index.read_text())
                entries = [BundleEntry.parse(raw) for raw in data["plugins"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise BundleError(f"{index} is not a bundle index: {exc}") from None
            self.entries = {(e.plugin_id, e.version): e for e in entries}
        elif root.exists() and any(root.iterdir()):
            raise BundleError(f"{root} is neither empty nor a bundle (it has no {INDEX}); "
                              "choose a new folder")

    @property
    def catalog_base(self) -> Path:
        return self.root / PLUGINS

    def catalog_url(self) -> str:
        return self.catalog_base.resolve().as_uri()

    def holds(self, plugin_id: str, version: str, sha256: str = "") -> bool:
        entry = self.entries.get((plugin_id, version))
        return entry is not None and (not sha256 or entry.sha256 == sha256) and \
            self.archive(plugin_id, version).is_file()

    def archive(self, plugin_id: str, version: str) -> Path:
        return self.catalog_base / bundle_archive_path(check_part(plugin_id, "plugin id"),
                                                       check_part(version, "version"))

    def add(self, entry: BundleEntry, archive: Path) -> None:
        """Copy ``archive`` (checked by the caller) into the bundle under ``entry``."""
        target = self.archive(entry.plugin_id, entry.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
        os.close(fd)
        shutil.copyfile(archive, temp)
        os.chmod(temp, 0o644)  # the operator reads the bundle as another user
        os.replace(temp, target)
        self.entries[(entry.plugin_id, entry.version)] = entry

    def write(self) -> None:
        """Every plugin's versions list (newest first) and the bundle's index."""
        by_plugin: dict[str, list[BundleEntry]] = {}
        for entry in self.entries.values():
            by_plugin.setdefault(entry.plugin_id, []).append(entry)
        for plugin_id, entries in by_plugin.items():
            entries.sort(key=lambda e: version_order(e.version), reverse=True)
            items = [{"version": e.version, "packages": {e.package: {
                "sha256": e.sha256, "md5": e.md5, "packageName": e.package,
                "downloadUrl": f"{plugin_id}/versions/{e.version}/download"}}}
                for e in entries]
            _write_json(self.catalog_base / bundle_versions_path(plugin_id),
                        {"items": items})
        listed = sorted(self.entries.values(),
                        key=lambda e: (e.plugin_id, version_order(e.version)))
        _write_json(self.root / INDEX, {"format": FORMAT, "catalogBase": PLUGINS,
                                        "plugins": [e.to_json() for e in listed]})

    def pack(self, tarball: Path) -> None:
        """The bundle as one tarball (gzip-compressed when the name ends in .gz or .tgz)."""
        compressed = tarball.name.endswith((".gz", ".tgz"))
        with (tarfile.open(tarball, "w:gz") if compressed else tarfile.open(tarball, "w")) as tar:
            for path in sorted(self.root.rglob("*")):
                if path.name.startswith("."):
                    continue
                tar.add(path, arcname=path.relative_to(self.root).as_posix(), recursive=False)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".index-", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
    os.chmod(temp, 0o644)
    os.replace(temp, path)


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, as the catalog publishes them."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()
