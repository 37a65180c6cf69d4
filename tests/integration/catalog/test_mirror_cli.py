"""``plugin-operator mirror`` as a person runs it: plugins from a catalog into a bundle that
is itself a catalog, verified on the way, refused ones left out."""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

import pytest

from plugin_operator.package.catalog_client import resolve
from tests.integration.catalog.conftest import TESTDATA_ID
from tests.support.catalog_server import CatalogServer
from tests.support.samples import SignedSample, run, tamper

pytestmark = pytest.mark.integration
CLI = Path(sys.executable).with_name("plugin-operator")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mirror_writes_a_bundle_that_serves_as_a_catalog(
        catalog: CatalogServer, catalog_archives: dict[str, Path],
        signed_testdata_python: SignedSample, tmp_path: Path) -> None:
    wanted = tmp_path / "plugins.txt"
    wanted.write_text(f"# what the cluster runs\n{TESTDATA_ID}@0.1.0\n")
    manifests = tmp_path / "plugins.yaml"
    manifests.write_text(f"""
apiVersion: plugin-operator.dev/v1alpha1
kind: Plugin
metadata: {{name: newest}}
spec: {{pluginId: {TESTDATA_ID}, source: {{catalog: {{version: latest}}}}}}
---
apiVersion: plugin-operator.dev/v1alpha1
kind: Plugin
metadata: {{name: by-url}}
spec: {{pluginId: other, version: 1.0.0, source: {{url: https://example.com/p.zip}}}}
""")
    bundle = tmp_path / "bundle"
    result = run(CLI, "mirror", "--catalog", catalog.api, "--list", wanted, "--manifest",
                 manifests, "--output", bundle, "--tarball", tmp_path / "bundle.tar",
                 "--trusted-key", signed_testdata_python.public_key, "--json")
    assert result.returncode == 0, result.stderr
    assert "Plugin by-url does not install from a catalog; skipped" in result.stderr
    report = json.loads(result.stdout)
    mirrored = {(p["pluginId"], p["version"]): p for p in report["plugins"]}
    assert set(mirrored) == {(TESTDATA_ID, "0.1.0"), (TESTDATA_ID, "0.2.0")}
    assert mirrored[(TESTDATA_ID, "0.2.0")]["requested"] == "latest"
    assert mirrored[(TESTDATA_ID, "0.2.0")]["signature"] == "valid"
    assert mirrored[(TESTDATA_ID, "0.1.0")]["package"] == "any"
    # The catalog was asked the way Grafana's installer asks.
    asked = [s for s in catalog.catalog.seen if s.path.endswith("/versions")]
    assert asked
    assert asked[0].headers["grafana-os"] == "linux"
    assert asked[0].headers["grafana-version"] == "12.3.0"

    index = json.loads((bundle / "index.json").read_text())
    assert [(p["pluginId"], p["version"], p["sha256"]) for p in index["plugins"]] == [
        (TESTDATA_ID, v, _sha(catalog_archives[v])) for v in ("0.1.0", "0.2.0")]
    listed = json.loads((bundle / "plugins" / TESTDATA_ID / "versions" / "index.json")
                        .read_text())
    assert [item["version"] for item in listed["items"]] == ["0.2.0", "0.1.0"]
    with tarfile.open(tmp_path / "bundle.tar") as tar:
        names = set(tar.getnames())
    assert {"index.json", f"plugins/{TESTDATA_ID}/versions/index.json",
            f"plugins/{TESTDATA_ID}/versions/0.2.0/download"} <= names

    # The bundle is a catalog: on disk, and behind an HTTP server under another base path.
    for base in (report["catalogUrl"], catalog.url + "/mirror/grafana/plugins"):
        newest = resolve(base, TESTDATA_ID, "latest")
        assert newest.selection.version == "0.2.0"
        assert newest.selection.sha256 == _sha(catalog_archives["0.2.0"])


def test_mirror_leaves_out_what_it_cannot_verify_or_find(
        catalog: CatalogServer, catalog_archives: dict[str, Path],
        signed_testdata_python: SignedSample, tmp_path: Path) -> None:
    tampered = tamper(catalog_archives["0.4.0"], tmp_path / "tampered.zip")
    catalog.catalog.publish(TESTDATA_ID, "0.4.0", tampered.read_bytes())
    bundle = tmp_path / "bundle"
    result = run(CLI, "mirror", f"{TESTDATA_ID}@0.4.0", f"{TESTDATA_ID}@9.9.9",
                 f"{TESTDATA_ID}@0.1.0", "--catalog", catalog.api, "--output", bundle,
                 "--trusted-key", signed_testdata_python.public_key)
    assert result.returncode == 1, result.stdout
    assert "0.4.0 is refused [signatureModified]" in result.stderr
    assert "[versionNotFound]" in result.stderr
    assert "it lists 0.4.0, 0.3.0, 0.2.0, 0.1.0" \
        in result.stderr
    assert f"mirrored {TESTDATA_ID} 0.1.0" in result.stdout
    index = json.loads((bundle / "index.json").read_text())
    assert [p["version"] for p in index["plugins"]] == ["0.1.0"]
    assert not (bundle / "plugins" / TESTDATA_ID / "versions" / "0.4.0").exists()

    # Without the test key the signature is not trusted: nothing new is copied.
    again = run(CLI, "mirror", f"{TESTDATA_ID}@0.2.0", "--catalog", catalog.api, "--output",
                bundle)
    assert again.returncode == 1
    assert "0.2.0 is refused [signatureInvalid]" in again.stderr
    assert "not trusted" in again.stderr
    assert run(CLI, "mirror", "--output", bundle).returncode == 2
