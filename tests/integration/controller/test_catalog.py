"""Plugins installed by id and version from a plugin catalog, on a real apiserver: the
operator's catalog, a Plugin's own (a mirror under another base path), and an offline bundle
with the online catalog gone."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.catalog.conftest import (  # noqa: F401 - fixtures used here
    TESTDATA_ID,
    catalog,
    catalog_archives,
)
from tests.integration.controller.conftest import OperatorProcess
from tests.support.catalog_server import CatalogServer
from tests.support.kube import ControlPlane
from tests.support.net import free_port
from tests.support.samples import SignedSample, run

pytestmark = pytest.mark.integration
CLI = Path(sys.executable).with_name("plugin-operator")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plugin(name: str, catalog_source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name},
            "spec": {"pluginId": TESTDATA_ID, "source": {"catalog": catalog_source}, **spec}}


def _operator(crds: ControlPlane, namespace: str, workdir: Path, key: Path, catalog_url: str,
              monkeypatch: pytest.MonkeyPatch) -> OperatorProcess:
    monkeypatch.setenv("PLUGIN_OPERATOR_CATALOG_URL", catalog_url)
    workdir.mkdir(parents=True, exist_ok=True)
    handle = OperatorProcess(crds, namespace, workdir, key)
    handle.start()
    return handle


@pytest.fixture
def online(crds: ControlPlane, namespace: str, tmp_path: Path,
           catalog: CatalogServer,  # noqa: F811
           signed_testdata_python: SignedSample,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[OperatorProcess]:
    """The operator with the test catalog as its catalog."""
    handle = _operator(crds, namespace, tmp_path / "operator", signed_testdata_python.public_key,
                       catalog.api, monkeypatch)
    try:
        yield handle
    finally:
        handle.stop()


def _settled(op: OperatorProcess, name: str, phase: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = op.get("plugin", name)
        status = obj.get("status") or {}
        done = status.get("phase") == phase and \
            status.get("observedGeneration") == obj["metadata"]["generation"]
        return status if done else None

    settled: dict[str, Any] = op.wait_for(f"Plugin {name} {phase}", probe)
    return settled


def test_latest_is_resolved_once_and_survives_a_restart_with_an_empty_cache(
        online: OperatorProcess, catalog: CatalogServer,  # noqa: F811
        catalog_archives: dict[str, Path]) -> None:  # noqa: F811
    online.apply(_plugin("newest", {"version": "latest"}))
    status = _settled(online, "newest", "Starting")
    # 0.3.0 is newer but has no linux-amd64 package: backend pods could not run it.
    assert status["artifact"]["catalogVersion"] == "0.2.0"
    assert status["artifact"]["sha256"] == _sha(catalog_archives["0.2.0"])
    (pod,) = online.pods("newest")
    assert _sha(catalog_archives["0.2.0"]) in " ".join(pod["spec"]["initContainers"][0]["args"])
    downloads = catalog.catalog.downloads()
    assert downloads == [f"/api/plugins/{TESTDATA_ID}/versions/0.2.0/download"]

    # A newer version is published; the operator restarts with nothing in its cache.
    catalog.catalog.publish(TESTDATA_ID, "0.4.0", catalog_archives["0.4.0"].read_bytes())
    online.stop()
    shutil.rmtree(online.workdir / "artifacts")
    online.start()
    online.wait_for("0.2.0 fetched again", lambda: len(catalog.catalog.downloads()) == 2)
    assert catalog.catalog.downloads()[-1].endswith("/versions/0.2.0/download")
    status = _settled(online, "newest", "Starting")
    assert status["artifact"]["catalogVersion"] == "0.2.0"
    assert [p["metadata"]["uid"] for p in online.pods("newest")] == [pod["metadata"]["uid"]]

    # A new spec generation asks the catalog again.
    online.kubectl("patch", "plugin", "newest", "--type=merge", "-p", '{"spec":{"replicas":2}}')
    online.wait_for("latest moves to 0.4.0", lambda: (
        online.status("plugin", "newest").get("artifact") or {}).get("catalogVersion")
        == "0.4.0")


def test_what_the_catalog_cannot_give_is_said_clearly(
        online: OperatorProcess, catalog: CatalogServer,  # noqa: F811
        catalog_archives: dict[str, Path]) -> None:  # noqa: F811
    online.apply(_plugin("pinned", {}, version="0.1.0"))
    assert _settled(online, "pinned", "Starting")["artifact"]["catalogVersion"] == "0.1.0"

    online.apply(_plugin("typo", {"version": "0.9.0"}))
    message = _settled(online, "typo", "Pending")["message"]
    assert "[versionNotFound]" not in message  # Pending says it plainly, without a code
    assert "has no version 0.9.0" in message
    assert "it lists 0.3.0, 0.2.0, 0.1.0" in message
    assert "retrying in" in message

    online.apply(_plugin("mac-only", {"version": "0.3.0"}))
    message = _settled(online, "mac-only", "Rejected")["message"]
    assert message.startswith("[unsupportedVersion]")
    assert "darwin-arm64" in message

    catalog.catalog.publish(TESTDATA_ID, "0.4.0", catalog_archives["0.4.0"].read_bytes(),
                            published_sha256="0" * 64)
    online.apply(_plugin("lying", {"version": "0.4.0"}))
    message = _settled(online, "lying", "Rejected")["message"]
    assert message.startswith("[checksumMismatch]")
    assert "0" * 64 in message
    assert online.pods("lying") == []

    online.apply(_plugin("gone", {"version": "0.1.0",
                                  "url": f"http://127.0.0.1:{free_port()}/api/plugins"}))
    message = _settled(online, "gone", "Pending")["message"]
    assert "catalog http://127.0.0.1:" in message
    assert "retrying" in message


def test_a_mirror_bundle_serves_when_the_online_catalog_is_gone(
        crds: ControlPlane, namespace: str, tmp_path: Path,
        catalog: CatalogServer,  # noqa: F811
        catalog_archives: dict[str, Path],  # noqa: F811
        signed_testdata_python: SignedSample,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    mirrored = run(CLI, "mirror", f"{TESTDATA_ID}@latest", f"{TESTDATA_ID}@0.1.0",
                   "--catalog", catalog.api, "--output", bundle,
                   "--trusted-key", signed_testdata_python.public_key)
    assert mirrored.returncode == 0, mirrored.stderr
    # The bundle behind an HTTP server under another base path, named by one Plugin ...
    mirror_url = catalog.url + "/mirror/grafana/plugins"
    op = _operator(crds, namespace, tmp_path / "operator", signed_testdata_python.public_key,
                   (bundle / "plugins").as_uri(), monkeypatch)
    try:
        op.apply(_plugin("from-mirror", {"version": "0.1.0", "url": mirror_url}))
        assert _settled(op, "from-mirror", "Starting")["artifact"]["sha256"] == \
            _sha(catalog_archives["0.1.0"])
        assert any(s.path == f"/mirror/grafana/plugins/{TESTDATA_ID}/versions/0.1.0/download"
                   for s in catalog.catalog.seen)
        # ... and on disk as the operator's own catalog, with no server at all.
        catalog.stop()
        op.apply(_plugin("offline", {"version": "latest"}))
        status = _settled(op, "offline", "Starting")
        assert status["artifact"]["catalogVersion"] == "0.2.0"
        assert status["artifact"]["sha256"] == _sha(catalog_archives["0.2.0"])
    finally:
        op.stop()
