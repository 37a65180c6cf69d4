"""The operator as the chart installs it, on the real cluster, with signed sample plugins.

One Helm release per session watches one plugin namespace; each test applies its own
Plugins there and everything it made is deleted after it. The Python sample's archive is
small enough for a ConfigMap; the Go sample's (about 10 MB) is served over HTTP by a pod of
our image inside the namespace, and its Plugin names it with a pinned sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.models import naming
from plugin_operator.package.archive import extract_archive
from tests.e2e.conftest import REPO_ROOT, run_script, scoped_namespace
from tests.e2e.install import Release, install_release
from tests.e2e.kube import Cluster, server_pod
from tests.support.catalog_samples import package_version
from tests.support.samples import build_sample_go, package_testdata_python, run
from tests.support.wait import eventually

TESTDATA_ID = "plugin-operator-testdata-datasource"
SAMPLE_GO_ID = "plugin-operator-sample-go-datasource"
LABEL_PLUGIN = "plugin-operator.dev/plugin"
API_VERSION = "plugin-operator.dev/v1alpha1"
ARCHIVE_SERVER = "archives"
ARCHIVE_PORT = 8080
PLUGIN_IMAGE = "plugin-operator.dev/e2e-testdata-plugin:0.1.0"  # FROM scratch, see below



def backend_restarts(pod: Mapping[str, Any]) -> int:
    """Restarts of a backend: the kubelet's container restarts, and the plugin restarts the
    host did in the container (the operator records those on the pod from the host's
    reports)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    in_pod = annotations.get(naming.ANNOTATION_IN_POD_RESTARTS, "0")
    return int(in_pod) + sum(s.get("restartCount", 0)
                             for s in (pod.get("status") or {}).get("containerStatuses") or [])


@dataclass(frozen=True)
class SignedArchives:
    python_v1: Path  # plugins/testdata-python as it is (0.1.0)
    python_v2: Path  # the same plugin with info.version 0.2.0
    go: Path  # plugins/sample-go (1.0.0)
    public_key: Path


def _sign(archive: Path, output: Path, key: Path) -> Path:
    signed = run(REPO_ROOT / "hack" / "sign-plugin.sh", archive, "--output", output,
                 "--key", key, "--generate-key")
    assert signed.returncode == 0, f"hack/sign-plugin.sh {archive} failed:\n{signed.stderr}"
    return output


@pytest.fixture(scope="session")
def signed_archives(tmp_path_factory: pytest.TempPathFactory) -> SignedArchives:
    work = tmp_path_factory.mktemp("signed")
    key = work / "e2e-signer.asc"
    go_zip = build_sample_go()["SAMPLE_GO_ZIP"]
    return SignedArchives(
        python_v1=_sign(package_testdata_python(work / "v1"), work / "testdata-v1.zip", key),
        python_v2=_sign(package_version(work, "0.2.0"), work / "testdata-v2.zip", key),
        go=_sign(go_zip, work / "sample-go.zip", key),
        public_key=key.with_suffix(".pub.asc"),
    )


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    built = subprocess.run([str(REPO_ROOT / "hack" / "build-components.sh"), "helm"],
                           capture_output=True, text=True, check=False, timeout=1800)
    assert built.returncode == 0, f"hack/build-components.sh helm failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1]) / "helm"


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "operator-plugins") as name:
        yield name


# Quick replacement of failed pods keeps the suites short; the defaults are tested in the
# operator's integration tests.
QUICK_BACKOFF = {"initial": "1s", "max": "10s", "resetAfter": "1m"}


@contextlib.contextmanager
def signed_release(cluster: Cluster, helm: Path, workdir: Path, plugin_namespace: str,
                   archives: SignedArchives, *, prefix: str = "po-e2e",
                   operator_values: dict[str, Any] | None = None) -> Iterator[Release]:
    """A release watching ``plugin_namespace`` that trusts the test signer and lets the
    unsigned Python sample run; uninstalled after the ``with`` block."""
    installed = install_release(
        cluster, helm, workdir, plugin_namespaces=[plugin_namespace],
        trusted_keys={"e2e-signer.asc": archives.public_key.read_text()},
        allow_unsigned=[TESTDATA_ID], prefix=prefix,
        values={"operator": {"backoff": QUICK_BACKOFF, **(operator_values or {})}})
    try:
        yield installed
    finally:
        installed.uninstall()


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,
            signed_archives: SignedArchives,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with signed_release(cluster, helm_binary, tmp_path_factory.mktemp("helm"),
                        plugin_namespace, signed_archives,
                        operator_values={"healthCheckTimeout": "5s"}) as installed:
        yield installed


@pytest.fixture(scope="session")
def testdata_plugin_image(cluster: Cluster, signed_archives: SignedArchives,
                          tmp_path_factory: pytest.TempPathFactory) -> str:
    """The signed Python sample as users ship plugins in images: FROM scratch, at /plugin."""
    if not cluster.local:
        pytest.skip("needs to put a plugin image on the cluster's node, which these tests "
                    "do only on the local cluster (hack/image.sh plugin-image)")
    folder = extract_archive(signed_archives.python_v1,
                             tmp_path_factory.mktemp("plugin-image") / "plugin")
    return run_script("image.sh", "plugin-image", str(folder), PLUGIN_IMAGE)


@dataclass
class Plugins:
    """kubectl on the plugin namespace, with the operator's logs when something times out."""

    cluster: Cluster
    release: Release
    namespace: str

    def kubectl(self, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, stdin=stdin, check=check)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.cluster.apply(self.namespace, *objects)

    def get(self, *what: str) -> dict[str, Any]:
        return self.cluster.get(self.namespace, *what)

    def get_or_none(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def status(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get_or_none(kind, name)
        return dict((obj or {}).get("status") or {})

    def pods(self, plugin: str, *, alive_only: bool = True) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", f"{LABEL_PLUGIN}={plugin}")["items"]
        return [p for p in items if not (alive_only and p["metadata"].get("deletionTimestamp"))]

    def restarts(self, plugin: str) -> dict[str, int]:
        """{pod: restarts of its backend, both kinds} of the Plugin's pods."""
        return {p["metadata"]["name"]: backend_restarts(p) for p in self.pods(plugin)}

    def events(self, name: str) -> list[str]:
        items = self.get("events", "--field-selector", f"involvedObject.name={name}")["items"]
        return [f"{e['reason']}: {e['message']}" for e in items]

    def diagnostics(self) -> str:
        pods = self.kubectl("get", "pods,plugins,datasourceinstances", "-o", "wide",
                            check=False).stdout
        events = self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout
        failed = self.cluster.failed_containers(self.namespace)
        return (f"namespace {self.namespace}:\n{pods}\n{events[-4000:]}\n"
                f"containers that failed:\n{failed or '(none)'}\n"
                f"operator log tail:\n{self.release.operator_logs(80)}\n"
                f"{self.cluster.logs_hint}")

    def wait_for(self, what: str, probe: Callable[[], Any], timeout_s: float = 180,
                 interval_s: float = 0.5) -> Any:
        return eventually(what, probe, timeout_s=timeout_s, interval_s=interval_s,
                          diagnostics=self.diagnostics)

    def wait_phase(self, plugin: str, phase: str, timeout_s: float = 180) -> dict[str, Any]:
        status: dict[str, Any] = self.wait_for(
            f"Plugin {plugin} in phase {phase}",
            lambda: (s := self.status("plugin", plugin)).get("phase") == phase and
            s.get("observedGeneration") == self.generation(plugin) and s,
            timeout_s)
        return status

    def generation(self, plugin: str) -> int:
        obj = self.get_or_none("plugin", plugin)
        return int((obj or {}).get("metadata", {}).get("generation", -1))

    def archive_configmap(self, name: str, archive: Path) -> None:
        manifest = self.kubectl("create", "configmap", name, f"--from-file=plugin.zip={archive}",
                                "--dry-run=client", "-o", "json").stdout
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def delete_everything(self) -> None:
        """Every Plugin and DataSourceInstance, waiting until they are gone."""
        self.kubectl("delete", "datasourceinstances,plugins", "--all", "--wait=true",
                     "--timeout=120s")


@pytest.fixture
def plugins(cluster: Cluster, release: Release, plugin_namespace: str) -> Iterator[Plugins]:
    handle = Plugins(cluster, release, plugin_namespace)
    try:
        yield handle
    finally:
        handle.delete_everything()


def plugin_manifest(name: str, *, plugin_id: str = TESTDATA_ID, version: str = "0.1.0",
                    configmap: str | None = None, url: str | None = None,
                    image: dict[str, str] | None = None,
                    sha256: str | None = None, replicas: int = 1,
                    **spec: Any) -> dict[str, Any]:
    source: dict[str, Any] = ({"configMapRef": {"name": configmap, "key": "plugin.zip"}}
                              if configmap else {"image": image} if image else {"url": url})
    if sha256:
        source["sha256"] = sha256
    body: dict[str, Any] = {"pluginId": plugin_id, "version": version, "source": source,
                            "signature": {"policy": "RequireValid"}, **spec}
    if body.get("mode") != "Sidecar":
        body["replicas"] = replicas
    return {"apiVersion": API_VERSION, "kind": "Plugin", "metadata": {"name": name},
            "spec": body}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ArchiveServer:
    """A pod of our image serving archives over HTTP inside the plugin namespace."""

    cluster: Cluster
    namespace: str
    base_url: str

    def publish(self, archive: Path, name: str) -> str:
        """Upload ``archive`` into the server; returns its URL."""
        upload = ("import os, shutil, sys\n"
                  "target = os.path.join('/tmp/archives', sys.argv[1])\n"
                  "with open(target + '.part', 'wb') as out:\n"
                  "    shutil.copyfileobj(sys.stdin.buffer, out)\n"
                  "os.replace(target + '.part', target)\n")
        with archive.open("rb") as data:
            result = subprocess.run(
                [str(self.cluster.kubectl_path), "--kubeconfig", str(self.cluster.kubeconfig),
                 "-n", self.namespace, "exec", "-i", ARCHIVE_SERVER, "--", "python3", "-c",
                 upload, name], stdin=data, capture_output=True, timeout=300, check=False)
        assert result.returncode == 0, f"uploading {archive} failed:\n{result.stderr!r}"
        return f"{self.base_url}/{name}"


@pytest.fixture(scope="session")
def archive_server(cluster: Cluster, release: Release, plugin_namespace: str) -> ArchiveServer:
    serve = ("import functools, http.server, os\n"
             "os.makedirs('/tmp/archives', exist_ok=True)\n"
             "handler = functools.partial(http.server.SimpleHTTPRequestHandler,\n"
             "                            directory='/tmp/archives')\n"
             f"http.server.ThreadingHTTPServer(('', {ARCHIVE_PORT}), handler).serve_forever()\n")
    pod = server_pod(ARCHIVE_SERVER, cluster.image, ["python3", "-c", serve], ARCHIVE_PORT)
    cluster.apply(plugin_namespace, pod)
    ready = cluster.wait_ready(plugin_namespace, ARCHIVE_SERVER)
    return ArchiveServer(cluster, plugin_namespace,
                         f"http://{ready['status']['podIP']}:{ARCHIVE_PORT}")
