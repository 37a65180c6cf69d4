"""Choosing a version from a grafana.com-style catalog as Grafana's installer does, and
reading a bundle written by `plugin-operator mirror` as such a catalog."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from plugin_operator.package.bundle import Bundle, BundleEntry, BundleError, version_order
from plugin_operator.package.catalog import (
    CatalogError,
    Selection,
    bundle_file,
    download_url,
    normalize_version,
    parse_versions,
    select_version,
    versions_url,
)
from plugin_operator.package.catalog_client import archive_source, resolve

ID = "acme-test-datasource"
LINUX = {"sha256": "a" * 64, "md5": "m", "packageName": "linux-amd64",
         "downloadUrl": f"/api/plugins/{ID}/versions/x/download?os=linux&arch=amd64"}
ANY = {"sha256": "b" * 64, "packageName": "any"}
DARWIN = {"sha256": "c" * 64, "packageName": "darwin-arm64"}


def _versions(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


def _pick(payload: bytes, wanted: str) -> Selection:
    return select_version(parse_versions(payload, ID), ID, wanted, grafana_version="12.3.0")


def test_latest_is_the_first_listed_version_with_a_linux_amd64_or_any_package() -> None:
    payload = _versions({"version": "3.0.0", "packages": {"darwin-arm64": DARWIN}},
                        {"version": "2.0.0", "packages": {"linux-amd64": LINUX, "any": ANY}},
                        {"version": "1.0.0", "packages": {"any": ANY}})
    # The catalog's order decides (newest first), and the system's own package wins over any.
    assert _pick(payload, "latest") == Selection(ID, "2.0.0", "linux-amd64", "a" * 64)
    assert _pick(payload, "1.0.0") == Selection(ID, "1.0.0", "any", "b" * 64)


def test_latest_skips_versions_the_catalog_marks_incompatible_with_our_grafana() -> None:
    payload = _versions({"version": "2.0.0", "isCompatible": False,
                         "packages": {"linux-amd64": LINUX}},
                        {"version": "1.5.0", "isCompatible": True, "packages": {"any": ANY}})
    assert _pick(payload, "latest").version == "1.5.0"
    everything_incompatible = _versions({"version": "2.0.0", "isCompatible": False,
                                         "packages": {"any": ANY}})
    with pytest.raises(CatalogError) as caught:
        _pick(everything_incompatible, "2.0.0")
    assert caught.value.code == "grafanaVersionNotCompatible"
    assert "12.3.0" in caught.value.message


def test_a_version_without_packages_runs_anywhere_an_empty_package_map_nowhere() -> None:
    assert _pick(_versions({"version": "1.0.0"}), "latest") == Selection(ID, "1.0.0", "any", "")
    with pytest.raises(CatalogError) as caught:
        _pick(_versions({"version": "1.0.0", "packages": {}}), "latest")
    assert caught.value.code == "archNotFound"
    assert not caught.value.retryable


def test_a_requested_version_matches_with_or_without_a_leading_v() -> None:
    payload = _versions({"version": "v1.2.0", "packages": {"any": ANY}})
    assert _pick(payload, "1.2.0").version == "v1.2.0"
    assert normalize_version("^1.2.0") == normalize_version("v1.2.0") == "1.2.0"


def test_an_unknown_version_says_which_versions_exist_and_may_be_published_later() -> None:
    payload = _versions(*({"version": f"1.{n}.0", "packages": {"any": ANY}}
                          for n in range(12, 0, -1)))
    with pytest.raises(CatalogError) as caught:
        _pick(payload, "9.9.9")
    assert caught.value.code == "versionNotFound"
    assert caught.value.retryable
    assert "1.12.0, 1.11.0" in caught.value.message
    assert "and 2 older" in caught.value.message


def test_a_version_without_a_package_for_linux_amd64_is_refused_for_good() -> None:
    payload = _versions({"version": "1.0.0", "packages": {"darwin-arm64": DARWIN}})
    with pytest.raises(CatalogError) as caught:
        _pick(payload, "1.0.0")
    assert caught.value.code == "unsupportedVersion"
    assert not caught.value.retryable
    assert "darwin-arm64" in caught.value.message


def test_an_unknown_plugin_and_a_broken_answer() -> None:
    with pytest.raises(CatalogError) as caught:
        _pick(_versions(), "latest")
    assert caught.value.code == "pluginNotFound"
    for payload in (b"<html>proxy error</html>", b'{"plugins": []}', b"[1, 2]"):
        with pytest.raises(CatalogError) as caught:
            parse_versions(payload, ID)
        assert caught.value.code == "catalogInvalid"


def test_urls_are_the_ones_grafanas_installer_asks() -> None:
    base = "https://grafana.com/api/plugins/"
    assert versions_url(base, ID) == f"https://grafana.com/api/plugins/{ID}/versions"
    assert download_url(base, Selection(ID, "1.0.0", "any", "")) == (
        f"https://grafana.com/api/plugins/{ID}/versions/1.0.0/download?os=linux&arch=amd64")


def test_bundle_paths_never_leave_the_bundle() -> None:
    assert bundle_file(f"/{ID}/versions") == PurePosixPath(ID, "versions", "index.json")
    assert bundle_file(f"/{ID}/versions/1.0.0/download") == \
        PurePosixPath(ID, "versions", "1.0.0", "download")
    for escape in ("/../etc/passwd", f"/{ID}/versions/../../x", "", "/a\\b/versions"):
        assert bundle_file(escape) is None


def _bundle(tmp_path: Path, archives: dict[str, bytes]) -> Bundle:
    bundle = Bundle(tmp_path / "bundle")
    for version, data in archives.items():
        archive = tmp_path / f"{version}.zip"
        archive.write_bytes(data)
        bundle.add(BundleEntry(ID, version, "linux-amd64", hashlib.sha256(data).hexdigest(),
                               "", len(data), "test", "valid", "private", "test"), archive)
    bundle.write()
    return bundle


def test_a_bundle_is_a_catalog_newest_first(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, {"1.9.0": b"old", "1.10.0": b"new", "1.10.0-beta.1": b"pre"})
    listed = json.loads((bundle.catalog_base / ID / "versions" / "index.json").read_text())
    assert [item["version"] for item in listed["items"]] == ["1.10.0", "1.10.0-beta.1", "1.9.0"]
    resolved = resolve(bundle.catalog_url(), ID, "latest")
    assert resolved.selection == Selection(ID, "1.10.0", "linux-amd64",
                                           hashlib.sha256(b"new").hexdigest())
    assert Path(resolved.source).read_bytes() == b"new"
    assert Path(archive_source(bundle.catalog_url(), resolve(
        bundle.catalog_url(), ID, "1.9.0").selection)).read_bytes() == b"old"
    # A plugin the bundle lacks is an unknown plugin, as a catalog would say.
    with pytest.raises(CatalogError) as caught:
        resolve(bundle.catalog_url(), "other-datasource", "1.0.0")
    assert caught.value.code == "pluginNotFound"


def test_mirroring_again_adds_to_a_bundle_and_refuses_a_foreign_folder(tmp_path: Path) -> None:
    _bundle(tmp_path, {"1.0.0": b"one"})
    again = Bundle(tmp_path / "bundle")
    assert again.holds(ID, "1.0.0", hashlib.sha256(b"one").hexdigest())
    assert not again.holds(ID, "1.0.0", "f" * 64)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BundleError):
        Bundle(foreign)
    with pytest.raises(BundleError):
        again.archive(ID, "../1.0.0")
    assert version_order("2.0.0") > version_order("2.0.0-rc.1") > version_order("1.99.0")
