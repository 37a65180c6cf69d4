"""The hardening suite: issue 12's attacks and failures, replayed on the local cluster.

One Helm release per session (one gateway replica with the chart's memory limit) watches one
plugin namespace holding the Python sample with two replicas, fetched by URL from an
archive server pod of that namespace (so the test can take the plugin's source down), a
datasource that answers and one that kills its backend on every query (the sample's
``crashAfterQueries``), two ServiceAccounts and a client pod. Every call goes from the client
pod to the gateway Service, as a caller inside the cluster would make it.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import scoped_namespace
from tests.e2e.gateway.conftest import (
    ALLOWED_SA,
    CLIENT_POD,
    DENIED_SA,
    GatewayClient,
    _access_objects,
    _datasource,
    _secret,
)
from tests.e2e.install import Release
from tests.e2e.kube import SLEEP_FOREVER, Cluster, restricted_pod
from tests.e2e.operator.conftest import (  # noqa: F401 - fixtures used by this suite
    TESTDATA_ID,
    ArchiveServer,
    Plugins,
    SignedArchives,
    archive_server,
    helm_binary,
    plugin_manifest,
    sha256_of,
    signed_archives,
    signed_release,
)

PLUGIN = "py"
GOOD_UID = "hd-good"
DEADLY_UID = "hd-deadly"
ARCHIVE_NAME = "testdata.zip"
GATEWAY_MEMORY_LIMIT = 512 << 20  # the chart's default for gateway pods
READ_MEMORY_PEAK = """
for path in ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"):
    try:
        print(open(path).read().strip())
        break
    except OSError:
        pass
else:
    raise SystemExit("no cgroup memory peak in this container")
"""


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "hardening") as name:
        yield name


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,  # noqa: F811
            signed_archives: SignedArchives,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with signed_release(cluster, helm_binary, tmp_path_factory.mktemp("helm-hardening"),
                        plugin_namespace, signed_archives, prefix="hd-e2e") as installed:
        yield installed


@dataclass(frozen=True)
class Hardening:
    """The gateway client plus what the hardening tests look at besides answers."""

    client: GatewayClient
    archives: ArchiveServer

    @property
    def plugins(self) -> Plugins:
        return self.client.plugins

    @property
    def cluster(self) -> Cluster:
        return self.client.plugins.cluster

    def start(self, script: str, spec: dict[str, Any], timeout_s: int = 300
              ) -> subprocess.Popen[str]:
        """Start one of attacks.py's scripts in the client pod, ``spec`` on its stdin."""
        cluster = self.cluster
        with tempfile.TemporaryFile("w+") as given:  # the child keeps its own descriptor
            json.dump(spec, given)
            given.seek(0)
            return subprocess.Popen(
                [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
                 self.plugins.namespace, "exec", "-i", CLIENT_POD, "--", "timeout",
                 str(timeout_s), "python3", "-c", script],
                stdin=given, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, run: subprocess.Popen[str], timeout_s: int = 330) -> dict[str, Any]:
        """The JSON report of a script started with ``start``."""
        try:
            stdout, stderr = run.communicate(timeout=timeout_s)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, \
            f"client script failed:\n{stderr}\n{self.client.gateway_logs()}"
        report: dict[str, Any] = json.loads(stdout)
        return report

    def gateway_pods(self) -> list[dict[str, Any]]:
        release = self.client.release
        items: list[dict[str, Any]] = self.cluster.get(
            release.namespace, "pods", "-l", "app.kubernetes.io/component=gateway")["items"]
        return items

    def gateway_restarts(self) -> dict[str, tuple[int, str]]:
        """{pod: (restarts, last termination reason)} of the gateway's containers."""
        out: dict[str, tuple[int, str]] = {}
        for pod in self.gateway_pods():
            for status in pod["status"].get("containerStatuses") or []:
                last = (status.get("lastState") or {}).get("terminated") or {}
                out[pod["metadata"]["name"]] = (status.get("restartCount", 0),
                                                last.get("reason", ""))
        return out

    def gateway_memory_peak(self) -> int:
        """The highest memory use of the gateway containers since they started, as their
        cgroup counts it (what the OOM killer compares with the limit): cgroup v2's
        ``memory.peak``, v1's ``memory.max_usage_in_bytes``."""
        peaks = []
        for pod in self.gateway_pods():
            read = self.cluster.python(self.client.release.namespace, pod["metadata"]["name"],
                                       READ_MEMORY_PEAK)
            peaks.append(int(read.stdout.strip()))
        return max(peaks)

    def gateway_metrics(self) -> str:
        answer = self.client.call("GET", "/metrics")
        assert answer["status"] == 200, answer
        text: str = answer["body"]
        return text

    def backend_restarts(self) -> int:
        return sum(self.plugins.restarts(PLUGIN).values())

    def token_reviews(self) -> float:
        """TokenReviews the apiserver has answered since it started."""
        raw = self.cluster.kubectl("get", "--raw", "/metrics").stdout
        pattern = re.compile(r'^apiserver_request_total\{(?=[^}]*resource="tokenreviews")'
                             r'(?=[^}]*verb="POST")[^}]*\} (\S+)$', re.M)
        return sum(float(v) for v in pattern.findall(raw))


def _app_access() -> list[dict[str, Any]]:
    """``allowed`` may also call the plugin itself (its plugin-scoped streams)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "plugin-caller"},
         "rules": [{"apiGroups": ["plugin-operator.dev"], "resources": ["plugins"],
                    "verbs": ["get", "query"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "plugin-calls"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "plugin-caller"},
         "subjects": [{"kind": "ServiceAccount", "name": ALLOWED_SA}]},
    ]


def plugin_running(plugins: Plugins, replicas: int) -> bool:
    status = plugins.status("plugin", PLUGIN)
    return status.get("phase") == "Running" and status.get("readyReplicas") == replicas


@pytest.fixture(scope="session")
def hardening(cluster: Cluster, release: Release, plugin_namespace: str,
              signed_archives: SignedArchives,  # noqa: F811
              archive_server: ArchiveServer) -> Hardening:  # noqa: F811
    plugins = Plugins(cluster, release, plugin_namespace)
    url = archive_server.publish(signed_archives.python_v1, ARCHIVE_NAME)
    plugins.apply(
        plugin_manifest(PLUGIN, url=url, sha256=sha256_of(signed_archives.python_v1),
                        replicas=2),
        _secret("datasource-creds", apiKey="hardening", password="hardening"),
        _datasource("good-ds", GOOD_UID, PLUGIN, {"endpoint": "https://example.invalid"}),
        _datasource("deadly-ds", DEADLY_UID, PLUGIN, {"crashAfterQueries": 1}),
        *_access_objects(), *_app_access(),
        restricted_pod(CLIENT_POD, cluster.image, SLEEP_FOREVER))
    plugins.wait_for("Plugin py Running with 2 ready replicas",
                     functools.partial(plugin_running, plugins, 2))
    cluster.wait_ready(plugin_namespace, CLIENT_POD)
    service = cluster.get(release.namespace, "service", release.gateway_deployment)
    port = service["spec"]["ports"][0]["port"]
    tokens = [cluster.kubectl("-n", plugin_namespace, "create", "token", account,
                              "--duration=1h").stdout.strip()
              for account in (ALLOWED_SA, DENIED_SA)]
    client = GatewayClient(plugins, release, f"http://{service['spec']['clusterIP']}:{port}",
                           *tokens)
    plugins.wait_for("the good datasource answering through the gateway", lambda: client.call(
        "GET", f"/api/datasources/uid/{GOOD_UID}/health", token=client.allowed_token
    )["status"] == 200, timeout_s=120, interval_s=2)
    return Hardening(client, archive_server)


def query_body(uid: str, **model: Any) -> dict[str, Any]:
    return {"from": "now-1h", "to": "now",
            "queries": [{"refId": "A", "datasource": {"uid": uid}, "maxDataPoints": 10,
                         **model}]}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
