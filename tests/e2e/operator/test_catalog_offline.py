"""Plugins installed by id and version from a plugin catalog on the real cluster, then the
catalog taken away: with an offline bundle made by `plugin-operator mirror` mounted into the
operator (hostPath), a restart, a scale-up and a new namespace keep working.

The online catalog is tests/support/catalog_server.py in a pod of our image; the bundle is
mirrored on this machine (the cluster's node) from the same archives served on 127.0.0.1,
the way an operator of an air-gapped cluster mirrors on a connected machine. The release's
gateways keep no copies of the archives here, so the restarted operator can only get them
from the bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import scoped_namespace
from tests.e2e.install import CHART, Release, install_release, merge_values
from tests.e2e.kube import Cluster, server_pod
from tests.e2e.operator.conftest import (
    API_VERSION,
    QUICK_BACKOFF,
    TESTDATA_ID,
    Plugins,
    SignedArchives,
    sha256_of,
)
from tests.support.catalog_server import Catalog, CatalogServer
from tests.support.samples import run

CATALOG_POD = "catalog"
CATALOG_PORT = 8080
SERVER_SOURCE = Path(__file__).resolve().parents[2] / "support" / "catalog_server.py"
CLI = Path(sys.executable).with_name("plugin-operator")
# hostPath volumes need a folder every user can traverse; pytest's temporary folders are
# private to root, and the operator reads the bundle as uid 65532.
BUNDLES = Path("/var/lib/plugin-operator-e2e")


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[tuple[str, str]]:
    with scoped_namespace(cluster, "catalog-a") as first, \
            scoped_namespace(cluster, "catalog-b") as second:
        yield first, second


@pytest.fixture(scope="module")
def online_catalog(cluster: Cluster, namespaces: tuple[str, str],
                   signed_archives: SignedArchives) -> str:
    """The catalog pod, serving the Python sample 0.1.0 (any) and 0.2.0 (linux-amd64)."""
    namespace = namespaces[0]
    pod = server_pod(CATALOG_POD, cluster.image, [
        "python3", "-c", SERVER_SOURCE.read_text(), "--root", "/tmp/catalog",
        "--port", str(CATALOG_PORT)], CATALOG_PORT)
    cluster.apply(namespace, pod)
    ready = cluster.wait_ready(namespace, CATALOG_POD)
    for version, archive, package in (("0.1.0", signed_archives.python_v1, "any"),
                                      ("0.2.0", signed_archives.python_v2, "linux-amd64")):
        _upload(cluster, namespace, archive, f"{TESTDATA_ID}/{version}/{package}.zip")
    return f"http://{ready['status']['podIP']}:{CATALOG_PORT}/api/plugins"


def _upload(cluster: Cluster, namespace: str, archive: Path, name: str) -> None:
    upload = ("import os, shutil, sys\n"
              "target = os.path.join('/tmp/catalog', sys.argv[1])\n"
              "os.makedirs(os.path.dirname(target), exist_ok=True)\n"
              "with open(target + '.part', 'wb') as out:\n"
              "    shutil.copyfileobj(sys.stdin.buffer, out)\n"
              "os.replace(target + '.part', target)\n")
    with archive.open("rb") as data:
        result = subprocess.run(
            [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
             namespace, "exec", "-i", CATALOG_POD, "--", "python3", "-c", upload, name],
            stdin=data, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, f"uploading {archive} failed:\n{result.stderr!r}"


@pytest.fixture(scope="module")
def bundle(signed_archives: SignedArchives, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Path]:
    """The same two versions mirrored into a bundle on the node (for latest: 0.2.0)."""
    content = Catalog(tmp_path_factory.mktemp("mirror-source"))
    content.publish(TESTDATA_ID, "0.1.0", signed_archives.python_v1.read_bytes(), "any")
    content.publish(TESTDATA_ID, "0.2.0", signed_archives.python_v2.read_bytes())
    server = CatalogServer(content).start()
    BUNDLES.mkdir(mode=0o755, exist_ok=True)
    BUNDLES.chmod(0o755)
    folder = BUNDLES / f"bundle-{uuid.uuid4().hex[:8]}"
    try:
        mirrored = run(CLI, "mirror", f"{TESTDATA_ID}@latest", f"{TESTDATA_ID}@0.1.0",
                       "--catalog", server.api, "--output", folder,
                       "--trusted-key", signed_archives.public_key)
        assert mirrored.returncode == 0, mirrored.stderr
        folder.chmod(0o755)
        yield folder
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def catalog_release(cluster: Cluster, helm_binary: Path, namespaces: tuple[str, str],
                    signed_archives: SignedArchives, online_catalog: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    installed = install_release(
        cluster, helm_binary, tmp_path_factory.mktemp("helm-catalog"),
        plugin_namespaces=list(namespaces),
        trusted_keys={"e2e-signer.asc": signed_archives.public_key.read_text()},
        allow_unsigned=[TESTDATA_ID], prefix="cat-e2e",
        values={"operator": {"backoff": QUICK_BACKOFF, "catalog": {"url": online_catalog}},
                "gateway": {"artifactMirror": {"enabled": False}}})
    try:
        yield installed
    finally:
        installed.uninstall()


def _catalog_plugin(name: str, catalog: dict[str, str], replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Plugin", "metadata": {"name": name},
            "spec": {"pluginId": TESTDATA_ID, "source": {"catalog": catalog},
                     "replicas": replicas}}


def _switch_to_bundle(release: Release, bundle: Path, workdir: Path) -> None:
    """helm upgrade: the bundle mounted and used as the operator's catalog (which restarts
    the operator: its configuration changed)."""
    values = merge_values(release.values, {"operator": {"catalog": {"bundle": {
        "hostPath": str(bundle)}}}})
    values_file = workdir / "values-bundle.json"
    values_file.write_text(json.dumps(values))
    release.helm_run("upgrade", release.name, str(CHART), "--namespace", release.namespace,
                     "--values", str(values_file), "--wait", "--timeout", "5m")


def test_catalog_installs_then_the_bundle_serves_without_it(
        cluster: Cluster, catalog_release: Release, namespaces: tuple[str, str],
        bundle: Path, signed_archives: SignedArchives,
        tmp_path: Path) -> None:
    first = Plugins(cluster, catalog_release, namespaces[0])
    second = Plugins(cluster, catalog_release, namespaces[1])
    try:
        first.apply(_catalog_plugin("newest", {"version": "latest"}),
                    _catalog_plugin("pinned", {"version": "0.1.0"}))
        newest = first.wait_phase("newest", "Running")
        assert newest["artifact"]["catalogVersion"] == "0.2.0"
        assert newest["artifact"]["sha256"] == sha256_of(signed_archives.python_v2)
        assert first.wait_phase("pinned", "Running")["artifact"]["sha256"] == \
            sha256_of(signed_archives.python_v1)
        operator_before = catalog_release.operator_pod()

        # The catalog goes away; the operator restarts with the bundle as its catalog and
        # an empty cache (no gateway copies in this release).
        first.kubectl("delete", "pod", CATALOG_POD, "--wait=true")
        _switch_to_bundle(catalog_release, bundle, tmp_path)
        first.wait_for("a new operator pod",
                       lambda: catalog_release.operator_pod() != operator_before)

        # Restart: a replaced backend pod fetches the archive, which the new operator could
        # only have copied from the bundle.
        (old,) = first.pods("newest")
        first.kubectl("delete", "pod", old["metadata"]["name"], "--wait=true")
        first.wait_for("a replacement backend pod, ready", lambda: [
            p for p in first.pods("newest") if p["metadata"]["uid"] != old["metadata"]["uid"]
            and _ready(p)])
        newest = first.wait_phase("newest", "Running")
        assert newest["artifact"]["catalogVersion"] == "0.2.0"

        # Scale-up: a new spec generation resolves latest again, now from the bundle.
        first.kubectl("patch", "plugin", "newest", "--type=merge", "-p",
                      '{"spec": {"replicas": 2}}')
        first.wait_for("two ready replicas", lambda: (
            s := first.status("plugin", "newest")).get("readyReplicas") == 2 and
            s.get("observedGeneration") == first.generation("newest"))
        assert first.status("plugin", "newest")["artifact"]["catalogVersion"] == "0.2.0"

        # A namespace that never ran a plugin.
        second.apply(_catalog_plugin("fresh", {"version": "0.1.0"}))
        fresh = second.wait_phase("fresh", "Running")
        assert fresh["artifact"]["sha256"] == sha256_of(signed_archives.python_v1)
    finally:
        second.delete_everything()
        first.delete_everything()


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
