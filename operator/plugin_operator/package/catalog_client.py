"""Asking a plugin catalog which archive to download: over HTTP(S), or from a bundle on disk
(a ``file://`` base, as ``plugin-operator mirror`` writes it). The choosing is in
:mod:`plugin_operator.package.catalog`; the download itself is :func:`fetch.download`'s.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from plugin_operator.package.catalog import (
    LINUX_AMD64,
    MAX_VERSIONS_BYTES,
    CatalogError,
    CatalogVersion,
    Selection,
    bundle_file,
    download_url,
    parse_versions,
    select_version,
    versions_url,
)
from plugin_operator.package.fetch import FetchError, open_url

CATALOG_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Resolved:
    selection: Selection
    # What fetch.download() reads: the download URL, or a file of a bundle on disk.
    source: str


def is_file_catalog(base: str) -> bool:
    return urlsplit(base).scheme == "file"


def _bundle_path(base: str, url: str) -> Path | None:
    """The file of the bundle at ``base`` (a file:// URL) that answers ``url``."""
    relative = urlsplit(url).path[len(urlsplit(base).path.rstrip("/")):]
    inside = bundle_file(unquote(relative))
    return None if inside is None else Path(unquote(urlsplit(base).path)) / inside


def read_versions(base: str, plugin_id: str, *, grafana_version: str = "",
                  platform: tuple[str, str] = LINUX_AMD64,
                  timeout: float = CATALOG_TIMEOUT_SECONDS) -> tuple[CatalogVersion, ...]:
    """Every version of ``plugin_id`` the catalog at ``base`` lists, newest first; none for
    a plugin it does not know."""
    url = versions_url(base, plugin_id)
    if is_file_catalog(base):
        path = _bundle_path(base, url)
        if path is None or not path.is_file():
            return ()
        try:
            return parse_versions(path.read_bytes(), plugin_id)
        except OSError as exc:
            raise CatalogError("catalogUnreachable", f"cannot read {path}: {exc.strerror}",
                               retryable=True) from None
    # The headers Grafana's installer sends: grafana.com marks each version isCompatible
    # with this Grafana version.
    headers = {"User-Agent": "plugin-operator", "Accept": "application/json",
               "grafana-os": platform[0], "grafana-arch": platform[1]}
    if grafana_version:
        headers["grafana-version"] = grafana_version
    try:
        with open_url(urllib.request.Request(url, headers=headers), timeout,
                      f"asking the catalog {url}") as response:
            payload = response.read(MAX_VERSIONS_BYTES + 1)
    except FetchError as exc:
        if exc.missing:
            return ()
        raise CatalogError("catalogUnreachable", f"{exc}; retrying (is the catalog URL "
                                                 "right and reachable from the operator?)",
                           retryable=True) from None
    except OSError as exc:  # a reset half way through the answer
        raise CatalogError("catalogUnreachable", f"reading {url} failed: {exc}",
                           retryable=True) from None
    if len(payload) > MAX_VERSIONS_BYTES:
        raise CatalogError("catalogInvalid", f"{url} answered more than {MAX_VERSIONS_BYTES} "
                                             "bytes; that is no list of plugin versions")
    return parse_versions(payload, plugin_id)


def resolve(base: str, plugin_id: str, wanted: str, *, grafana_version: str = "",
            platform: tuple[str, str] = LINUX_AMD64,
            timeout: float = CATALOG_TIMEOUT_SECONDS) -> Resolved:
    """The version of ``plugin_id`` to install for ``wanted`` (a version or ``latest``) and
    where its archive is."""
    versions = read_versions(base, plugin_id, grafana_version=grafana_version,
                             platform=platform, timeout=timeout)
    selection = select_version(versions, plugin_id, wanted, platform, grafana_version)
    return Resolved(selection, archive_source(base, selection, platform))


def archive_source(base: str, selection: Selection,
                   platform: tuple[str, str] = LINUX_AMD64) -> str:
    url = download_url(base, selection, platform)
    if not is_file_catalog(base):
        return url
    path = _bundle_path(base, url)
    if path is None:
        raise CatalogError("catalogInvalid", f"{selection.version!r} cannot name a file of "
                                             "the bundle")
    return str(path)
