"""A Plugin's catalog source as the operator resolves it: the version and archive chosen,
the checksum the catalog publishes held against the download, and `latest` kept once
resolved. The catalog is a bundle on disk (file://), the verification a stand-in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest

from plugin_operator.controller.artifacts import ArtifactStore
from plugin_operator.controller.config import ConfigError, OperatorConfig, load_config
from plugin_operator.controller.images import ImageUnpacker
from plugin_operator.controller.packages import PackageError, PackagePipeline, VerifiedPackage
from plugin_operator.controller.plugin_sources import PluginSources
from plugin_operator.controller.podspec import Artifact, PluginRef
from plugin_operator.kube.rest import KubeApi
from plugin_operator.models.resources import PluginSpec, parse_plugin_spec
from plugin_operator.models.status import ArtifactStatus, Phase, PluginStatus
from plugin_operator.package.bundle import Bundle, BundleEntry

ID = "acme-test-datasource"
REF = PluginRef("ns", "p", "uid-1")


class Catalog:
    """A bundle on disk that tests publish into (and can lie in)."""

    def __init__(self, root: Path) -> None:
        self.bundle = Bundle(root / "bundle")
        self.work = root

    def publish(self, version: str, data: bytes, published: str | None = None) -> str:
        archive = self.work / f"{version}.zip"
        archive.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        self.bundle.add(BundleEntry(ID, version, "linux-amd64", published or digest, "",
                                    len(data), "test", "valid", "", ""), archive)
        self.bundle.write()
        return digest

    def take_away(self) -> None:
        index = self.bundle.catalog_base / ID / "versions" / "index.json"
        index.write_text(json.dumps({"items": []}))


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path)


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(digest, version) of every archive handed to verification, which passes."""
    seen: list[tuple[str, str]] = []

    def fake_verify(self: PackagePipeline, artifact: Artifact, spec: PluginSpec,
                    allow_unsigned: bool) -> VerifiedPackage:
        seen.append((artifact.sha256, spec.version))
        return VerifiedPackage(artifact, cast(Any, None), cast(Any, None), "gpx_test")

    monkeypatch.setattr(PackagePipeline, "_verify", fake_verify)
    return seen


def _sources(tmp_path: Path, catalog: Catalog) -> PluginSources:
    config = OperatorConfig(catalog_url=catalog.bundle.catalog_url())
    pipeline = PackagePipeline(ArtifactStore(tmp_path / "cache"), config)
    return PluginSources(cast(KubeApi, None), pipeline, cast(ImageUnpacker, None))


def _spec(**catalog: str) -> PluginSpec:
    return parse_plugin_spec({"pluginId": ID, "source": {"catalog": catalog}})


async def test_latest_is_resolved_then_kept_for_the_generation(
        tmp_path: Path, catalog: Catalog, verified: list[tuple[str, str]]) -> None:
    catalog.publish("1.0.0", b"one")
    two = catalog.publish("1.1.0", b"two")
    sources = _sources(tmp_path, catalog)
    package = await sources.resolve(REF, _spec(version="latest"), PluginStatus(), 1)
    assert package.artifact.sha256 == two
    assert verified == [(two, "1.1.0")]  # the package must hold the version resolved

    # A newer version appears; the status records what generation 1 resolved to.
    three = catalog.publish("1.2.0", b"three")
    running = PluginStatus(phase=Phase.RUNNING, observed_generation=1,
                           artifact=ArtifactStatus(two, 3, catalog_version="1.1.0"))
    kept = await sources.resolve(REF, _spec(version="latest"), running, 1)
    assert kept.artifact.sha256 == two
    # ... also after a restart with an empty cache: fetched again, by the recorded digest.
    restarted = _sources(tmp_path / "restarted", catalog)
    assert (await restarted.resolve(REF, _spec(version="latest"), running, 1)
            ).artifact.sha256 == two
    # A new generation asks again.
    assert (await sources.resolve(REF, _spec(version="latest"), running, 2)
            ).artifact.sha256 == three


async def test_a_kept_version_runs_without_the_catalog_while_its_archive_is_cached(
        tmp_path: Path, catalog: Catalog, verified: list[tuple[str, str]]) -> None:
    one = catalog.publish("1.0.0", b"one")
    sources = _sources(tmp_path, catalog)
    await sources.resolve(REF, _spec(version="1.0.0"), PluginStatus(), 1)
    catalog.take_away()
    running = PluginStatus(phase=Phase.RUNNING, observed_generation=1,
                           artifact=ArtifactStatus(one, 3, catalog_version="1.0.0"))
    assert (await sources.resolve(REF, _spec(version="1.0.0"), running, 1)
            ).artifact.sha256 == one
    with pytest.raises(PackageError) as caught:
        await sources.resolve(REF, _spec(version="1.0.0"), running, 2)
    assert caught.value.code == "pluginNotFound"
    assert caught.value.retryable


async def test_an_archive_unlike_the_published_checksum_is_refused(
        tmp_path: Path, catalog: Catalog, verified: list[tuple[str, str]]) -> None:
    catalog.publish("1.0.0", b"tampered on the way", published="f" * 64)
    sources = _sources(tmp_path, catalog)
    with pytest.raises(PackageError) as caught:
        await sources.resolve(REF, _spec(version="1.0.0"), PluginStatus(), 1)
    assert caught.value.code == "checksumMismatch"
    assert not caught.value.retryable
    assert "f" * 64 in caught.value.message
    assert verified == []  # never opened


async def test_a_pin_the_catalog_contradicts_is_refused_before_downloading(
        tmp_path: Path, catalog: Catalog, verified: list[tuple[str, str]]) -> None:
    catalog.publish("1.0.0", b"one")
    pinned = parse_plugin_spec({"pluginId": ID, "source": {"catalog": {"version": "1.0.0"},
                                                            "sha256": "e" * 64}})
    with pytest.raises(PackageError) as caught:
        await _sources(tmp_path, catalog).resolve(REF, pinned, PluginStatus(), 1)
    assert caught.value.code == "checksumMismatch"
    assert "spec.source.sha256 pins" in caught.value.message


async def test_an_unknown_version_is_retried_and_names_the_versions_there_are(
        tmp_path: Path, catalog: Catalog, verified: list[tuple[str, str]]) -> None:
    catalog.publish("1.0.0", b"one")
    with pytest.raises(PackageError) as caught:
        await _sources(tmp_path, catalog).resolve(REF, _spec(version="2.0.0"), PluginStatus(),
                                                  1)
    assert caught.value.code == "versionNotFound"
    assert caught.value.retryable
    assert "it lists 1.0.0" in caught.value.message


async def test_an_unreachable_catalog_is_retried(tmp_path: Path, catalog: Catalog,
                                                 verified: list[tuple[str, str]]) -> None:
    spec = _spec(version="1.0.0", url="http://127.0.0.1:9/api/plugins")  # discard: refused
    with pytest.raises(PackageError) as caught:
        await _sources(tmp_path, catalog).resolve(REF, spec, PluginStatus(), 1)
    assert caught.value.code == "catalogUnreachable"
    assert caught.value.retryable
    assert "http://127.0.0.1:9/api/plugins" in caught.value.message


def test_the_operators_catalog_setting(tmp_path: Path) -> None:
    empty = tmp_path / "config.yaml"
    empty.write_text("")
    assert load_config(empty, {}).catalog_url == "https://grafana.com/api/plugins"
    bundle = load_config(empty, {"PLUGIN_OPERATOR_CATALOG_URL": "file:///bundle/plugins/"})
    assert bundle.catalog_url == "file:///bundle/plugins"
    with pytest.raises(ConfigError) as caught:
        load_config(empty, {"PLUGIN_OPERATOR_CATALOG_URL": "ftp://mirror/plugins"})
    assert "catalog.url" in str(caught.value)
