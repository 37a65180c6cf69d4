"""Choosing a plugin version from a catalog that speaks grafana.com's plugin API (pure).

Grafana's installer (pkg/plugins/repo) asks ``GET {base}/{id}/versions``, whose ``items``
list every version newest first, each with ``packages`` keyed by ``<os>-<arch>`` (or
``any``) holding the archive's ``sha256`` (also ``md5``, ``packageName`` and a host-relative
``downloadUrl``). It takes the requested version (a leading ``v`` or ``^`` ignored), or for
none the first version that the catalog does not mark ``isCompatible: false`` and that has
a package for the system; a version without ``packages`` at all suits every system. It then
downloads ``{base}/{id}/versions/{version}/download`` and refuses an archive whose SHA-256
differs from the package's. We do the same for linux/amd64, the platform of backend pods,
and ask for that package in the download's query (``os``, ``arch``) as grafana.com's own
``downloadUrl`` does, so that a catalog that is only static files can serve it too.

A bundle written by ``plugin-operator mirror`` is such a catalog on disk: a URL path that
names a folder is answered by the folder's ``index.json`` (:func:`bundle_file`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

LINUX_AMD64 = ("linux", "amd64")
ANY_PLATFORM = "any"
LATEST = "latest"
DEFAULT_CATALOG_URL = "https://grafana.com/api/plugins"
# What a folder of a bundle answers with, e.g. plugins/<id>/versions/index.json.
INDEX = "index.json"
MAX_VERSIONS_BYTES = 16 << 20  # grafana.com's longest version lists are well below this


class CatalogError(Exception):
    """The catalog cannot give the version asked for. ``code`` names the problem the way
    Grafana's installer does (versionNotFound, archNotFound, ...); ``retryable`` marks what
    may change without the Plugin changing (the catalog answering, a version published)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class CatalogPackage:
    sha256: str = ""
    md5: str = ""
    package_name: str = ""


@dataclass(frozen=True)
class CatalogVersion:
    version: str
    # None: the catalog lists no packages, which Grafana reads as "runs anywhere".
    packages: Mapping[str, CatalogPackage] | None = None
    is_compatible: bool | None = None
    grafana_dependency: str = ""

    def package_for(self, os_name: str, arch: str) -> tuple[str, CatalogPackage] | None:
        """The package for ``os_name``/``arch``, else the ``any`` one; None when neither."""
        if self.packages is None:
            return ANY_PLATFORM, CatalogPackage()
        for key in (f"{os_name}-{arch}", ANY_PLATFORM):
            if key in self.packages:
                return key, self.packages[key]
        return None


@dataclass(frozen=True)
class Selection:
    """The version chosen, the package key it is downloaded as and the digest the catalog
    publishes for it ("" when it publishes none, as for plugins built from a source zip)."""

    plugin_id: str
    version: str
    package: str
    sha256: str


def normalize_version(version: str) -> str:
    """A version as Grafana's installer compares them: no spaces, no leading ``v`` or ``^``."""
    text = version.replace(" ", "")
    return text[1:] if text[:1] in ("v", "^") else text


def parse_versions(payload: bytes, plugin_id: str) -> tuple[CatalogVersion, ...]:
    """The versions in a ``/versions`` answer, in the catalog's order (newest first)."""
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise CatalogError("catalogInvalid", f"the catalog's list of {plugin_id} versions is "
                                             f"not JSON ({exc}); is the catalog URL right?",
                           retryable=True) from None
    items = document.get("items") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise CatalogError("catalogInvalid", f"the catalog's list of {plugin_id} versions has "
                                             "no items; is the catalog URL the base of a "
                                             "grafana.com-style plugin API?", retryable=True)
    return tuple(_version(item) for item in items
                 if isinstance(item, Mapping) and isinstance(item.get("version"), str))


def _version(item: Mapping[str, Any]) -> CatalogVersion:
    raw = item.get("packages")
    packages = None
    if isinstance(raw, Mapping):
        packages = {str(key): CatalogPackage(str(value.get("sha256") or "").lower(),
                                             str(value.get("md5") or ""),
                                             str(value.get("packageName") or key))
                    for key, value in raw.items() if isinstance(value, Mapping)}
    compatible = item.get("isCompatible")
    return CatalogVersion(str(item["version"]), packages,
                          compatible if isinstance(compatible, bool) else None,
                          str(item.get("grafanaDependency") or ""))


def select_version(versions: Sequence[CatalogVersion], plugin_id: str, wanted: str,
                   platform: tuple[str, str] = LINUX_AMD64,
                   grafana_version: str = "") -> Selection:
    """The version ``wanted`` (or the newest suitable one for ``latest``) and its package
    for ``platform``, as Grafana's installer chooses."""
    system = "-".join(platform)
    if not versions:
        raise CatalogError("pluginNotFound", f"the catalog has no plugin {plugin_id!r}; check "
                                             "spec.pluginId, or add the plugin to the catalog",
                           retryable=True)
    listed = _listing(versions)
    compatible = [v for v in versions if v.is_compatible is not False]
    if not compatible:
        raise CatalogError("grafanaVersionNotCompatible",
                           f"the catalog marks every version of {plugin_id} incompatible with "
                           f"Grafana {grafana_version or '(the version the operator gave)'}; "
                           f"it lists {listed}", retryable=True)
    if wanted == LATEST:
        for candidate in compatible:
            found = candidate.package_for(*platform)
            if found is not None:
                return Selection(plugin_id, candidate.version, found[0], found[1].sha256)
        raise CatalogError("archNotFound", f"no version of {plugin_id} in the catalog has a "
                                           f"package for {system} (backend pods run on "
                                           f"{system}); it lists {listed}")
    match = next((v for v in versions
                  if normalize_version(v.version) == normalize_version(wanted)), None)
    if match is None:
        raise CatalogError("versionNotFound", f"the catalog has no version {wanted} of "
                                              f"{plugin_id}; it lists {listed}",
                           retryable=True)
    found = match.package_for(*platform)
    if found is None:
        have = ", ".join(sorted(match.packages or {})) or "none"
        raise CatalogError("unsupportedVersion", f"{plugin_id} {match.version} has no package "
                                                 f"for {system} (backend pods run on {system}); "
                                                 f"its packages: {have}")
    return Selection(plugin_id, match.version, found[0], found[1].sha256)


def _listing(versions: Sequence[CatalogVersion], limit: int = 10) -> str:
    names = [v.version for v in versions]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} older" if len(names) > limit else "")


def versions_url(base: str, plugin_id: str) -> str:
    return f"{base.rstrip('/')}/{quote(plugin_id, safe='')}/versions"


def download_url(base: str, selection: Selection,
                 platform: tuple[str, str] = LINUX_AMD64) -> str:
    version = quote(selection.version, safe="")
    return (f"{versions_url(base, selection.plugin_id)}/{version}/download"
            f"?os={platform[0]}&arch={platform[1]}")


def bundle_file(url_path: str) -> PurePosixPath | None:
    """The file of a bundle that answers ``url_path`` (relative to the bundle's catalog base,
    query removed): ``<id>/versions``, a folder in the bundle, answers with its
    ``index.json``. None for a path that could leave the bundle."""
    parts = [p for p in url_path.split("/") if p]
    if not parts or any(p in (".", "..") or "\\" in p for p in parts):
        return None
    if parts[-1] == "versions":
        parts.append(INDEX)
    return PurePosixPath(*parts)


def bundle_versions_path(plugin_id: str) -> PurePosixPath:
    """Where a bundle keeps ``{base}/{id}/versions`` (relative to its catalog base)."""
    return PurePosixPath(plugin_id, "versions", INDEX)


def bundle_archive_path(plugin_id: str, version: str) -> PurePosixPath:
    """Where a bundle keeps ``{base}/{id}/versions/{version}/download``."""
    return PurePosixPath(plugin_id, "versions", version, "download")
