"""Each gateway pod's copy of the verified archives: what it keeps, what it serves, and the
plugin frontends it serves while the operator is away."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from plugin_operator.gateway.artifact_mirror import ArtifactMirror, MirroredAssetStore
from plugin_operator.gateway.routing import RoutingTable
from plugin_operator.models.resources import ObjectRef, parse_plugin_spec
from plugin_operator.models.status import ArtifactStatus, Phase, PluginStatus
from plugin_operator.models.world import PluginRecord
from tests.unit.package.conftest import PLUGIN_JSON, zip_bytes

SPEC = parse_plugin_spec({"pluginId": "acme-test-datasource", "version": "1.0.0",
                          "source": {"url": "https://example.com/p.zip"}})


def _operator_cache(tmp_path: Path, *archives: bytes) -> tuple[str, list[str]]:
    root = tmp_path / "operator"
    (root / "artifacts").mkdir(parents=True)
    digests = []
    for data in archives:
        digest = hashlib.sha256(data).hexdigest()
        (root / "artifacts" / digest).write_bytes(data)
        digests.append(digest)
    return root.as_uri(), digests


def _plugin(table: RoutingTable, name: str, digest: str, size: int, phase: str = "Running",
            url: bool = True) -> None:
    status = PluginStatus(phase=Phase(phase), artifact=ArtifactStatus(
        digest, size, f"http://operator:8081/artifacts/{digest}" if url else None))
    key = ObjectRef("plugins", name)
    table.plugins[key] = PluginRecord(key, SPEC, status)


def test_keeps_exactly_what_verified_plugins_use(tmp_path: Path) -> None:
    source, (a, b, c) = _operator_cache(tmp_path, b"a" * 10, b"b" * 10, b"c" * 10)
    table = RoutingTable()
    _plugin(table, "running", a, 10)
    _plugin(table, "rejected", b, 10, phase="Rejected")
    _plugin(table, "unverified", c, 10, url=False)
    mirror = ArtifactMirror(tmp_path / "mirror", 1 << 20, [source], table)
    assert mirror.sync_once() == []
    assert mirror.held() == {a}
    # The Plugin moves to another archive: the old one goes, the new one comes.
    _plugin(table, "running", c, 10)
    mirror.sync_once()
    assert mirror.held() == {c}


def test_bounded_and_never_trusts_wrong_bytes(tmp_path: Path) -> None:
    source, (a, b) = _operator_cache(tmp_path, b"a" * 100, b"b" * 100)
    table = RoutingTable()
    _plugin(table, "one", a, 100)
    _plugin(table, "two", b, 100)
    mirror = ArtifactMirror(tmp_path / "mirror", 150, [source], table)
    mirror.sync_once()
    assert len(mirror.held()) == 1  # no room for the second
    (tmp_path / "operator" / "artifacts" / a).write_bytes(b"tampered")
    tampered = ArtifactMirror(tmp_path / "other", 1 << 20, [source], table)
    assert tampered.sync_once() == [a]  # still missing: tried again later
    assert tampered.held() == {b}


def test_falls_back_to_a_peer_when_the_operator_has_nothing(tmp_path: Path) -> None:
    peer, (a,) = _operator_cache(tmp_path, b"archive")
    table = RoutingTable()
    _plugin(table, "p", a, 7)
    mirror = ArtifactMirror(tmp_path / "mirror", 1 << 20,
                            [(tmp_path / "empty").as_uri(), peer], table)
    assert mirror.sync_once() == []
    assert mirror.held() == {a}


async def test_serves_only_what_it_holds_for_a_plugin(tmp_path: Path) -> None:
    source, (a, b) = _operator_cache(tmp_path, b"a" * 10, b"b" * 10)
    table = RoutingTable()
    _plugin(table, "p", a, 10)
    mirror = ArtifactMirror(tmp_path / "mirror", 1 << 20, [source], table)
    mirror.sync_once()
    (tmp_path / "mirror" / b).write_bytes(b"b" * 10)  # held, but no Plugin uses it
    app = web.Application()
    app.add_routes(mirror.routes())
    async with TestClient(TestServer(app)) as client:
        served = await client.get(f"/artifacts/{a}")
        assert served.status == 200
        assert await served.read() == b"a" * 10
        assert (await client.get(f"/artifacts/{b}")).status == 404
        assert (await client.get("/artifacts/../../etc")).status in (400, 404)


async def test_frontends_come_from_the_mirror_while_the_operator_is_down(
        tmp_path: Path) -> None:
    data = zip_bytes([("acme/plugin.json", PLUGIN_JSON, 0),
                      ("acme/module.js", b"export {}", 0)])
    source, (digest,) = _operator_cache(tmp_path, data)
    table = RoutingTable()
    _plugin(table, "p", digest, len(data))
    mirror = ArtifactMirror(tmp_path / "mirror", 1 << 20, [source], table)
    mirror.sync_once()
    (tmp_path / "operator" / "artifacts" / digest).unlink()  # the operator restarted, empty
    assets = MirroredAssetStore(tmp_path / "assets", mirror)
    plugin = table.plugins[ObjectRef("plugins", "p")]
    asset = await assets.asset(plugin, "module.js")
    assert asset.path.read_bytes() == b"export {}"
