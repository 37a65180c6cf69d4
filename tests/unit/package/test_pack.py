"""Packing a plugin folder into an archive, and the operator's upload endpoint for it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from plugin_operator.controller.artifacts import ArtifactStore, UploadDesk, artifact_routes
from plugin_operator.package.archive import ExtractionLimits, extract_archive
from plugin_operator.package.pack import PackError, pack_directory
from tests.unit.package.conftest import PLUGIN_JSON


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "img").mkdir(parents=True)
    (root / "plugin.json").write_bytes(PLUGIN_JSON)
    (root / "gpx_acme_linux_amd64").write_bytes(b"\x7fELF backend")
    (root / "gpx_acme_linux_amd64").chmod(0o755)
    (root / "img" / "logo.svg").write_text("<svg/>")
    os.symlink("img/logo.svg", root / "logo.svg")
    return root


def test_a_folder_packs_into_grafanas_layout_and_unpacks_the_same(
        plugin_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "plugin.zip"
    archive.write_bytes(pack_directory(plugin_dir))
    unpacked = extract_archive(archive, tmp_path / "unpacked")
    assert (unpacked / "plugin.json").read_bytes() == PLUGIN_JSON
    assert os.access(unpacked / "gpx_acme_linux_amd64", os.X_OK)
    assert not os.access(unpacked / "img" / "logo.svg", os.X_OK)
    assert os.readlink(unpacked / "logo.svg") == "img/logo.svg"


def test_packing_is_deterministic(plugin_dir: Path) -> None:
    first = pack_directory(plugin_dir)
    os.utime(plugin_dir / "plugin.json", (0, 0))  # times do not matter
    assert pack_directory(plugin_dir) == first


def test_a_folder_without_plugin_json_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="is not a plugin folder"):
        pack_directory(tmp_path)


def test_a_folder_over_the_limits_is_refused(plugin_dir: Path) -> None:
    with pytest.raises(PackError, match="max_files"):
        pack_directory(plugin_dir, ExtractionLimits(max_files=2))
    with pytest.raises(PackError, match="max_total_bytes"):
        pack_directory(plugin_dir, ExtractionLimits(max_total_bytes=10))


async def test_the_operator_takes_an_expected_upload_once(plugin_dir: Path,
                                                          tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    heard: list[str] = []
    desk: UploadDesk[str] = UploadDesk(on_arrival=heard.append)
    token = desk.expect("plugins/acme")
    app = web.Application(client_max_size=1 << 20)
    app.add_routes(artifact_routes(store, desk, max_upload_bytes=1 << 20))
    data = pack_directory(plugin_dir)
    async with TestClient(TestServer(app)) as client:
        forged = await client.put("/uploads/forged", data=data)
        assert forged.status == 403
        assert "unknown or used already" in await forged.text()
        accepted = await client.put(f"/uploads/{token}", data=data)
        assert accepted.status == 201
        digest = hashlib.sha256(data).hexdigest()
        assert digest in await accepted.text()
        again = await client.put(f"/uploads/{token}", data=b"other bytes")
        assert again.status == 403
        too_big = await client.put(f"/uploads/{desk.expect('plugins/acme')}",
                                   data=b"x" * ((1 << 20) + 1))
        assert too_big.status == 413
        # Not served before the operator verified it, then served as uploaded.
        assert (await client.get(f"/artifacts/{digest}")).status == 404
        store.mark_verified(digest)
        served = await client.get(f"/artifacts/{digest}")
        assert await served.read() == data
    assert store.has(digest)
    upload = desk.arrived(token)
    assert upload is not None
    assert upload.sha256 == digest
    assert heard == ["plugins/acme"]
