"""The gateway as the chart installs it, queried through its Service on the real cluster.

One Helm release per session watches one plugin namespace that holds both signed samples
(the Python one with one replica, the Go one with two), a DataSourceInstance for each, two
ServiceAccounts (one allowed to query by a RoleBinding, one not) and a client pod of our
image. Every call goes from that client pod to the gateway Service's cluster IP, so traffic
stays inside the cluster. The signed archives, the Helm binary, the archive server and the
``Plugins`` handle are engineer G's operator e2e fixtures, reused as they are.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import scoped_namespace
from tests.e2e.gateway.client import CALL
from tests.e2e.install import Release
from tests.e2e.kube import SLEEP_FOREVER, Cluster, restricted_pod
from tests.e2e.operator.conftest import (  # noqa: F401 - fixtures used by this suite
    API_VERSION,
    SAMPLE_GO_ID,
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

PYTHON_UID = "e2e-python"
GO_UID = "e2e-go"
API_KEY = "e2e-secret-key"  # also in the Go datasource's jsonData (expectedApiKey): not secret
SECRET_ONLY = "e2e-only-in-the-secret"  # a secure value nothing else repeats
CLIENT_POD = "gateway-client"
ALLOWED_SA = "allowed"
DENIED_SA = "denied"
QUERIER_ROLE = "datasource-querier"


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "gateway-plugins") as name:
        yield name


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,  # noqa: F811
            signed_archives: SignedArchives,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with signed_release(cluster, helm_binary, tmp_path_factory.mktemp("helm-gateway"),
                        plugin_namespace, signed_archives, prefix="gw-e2e") as installed:
        yield installed


def _secret(name: str, **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


def _datasource(name: str, uid: str, plugin: str, json_data: dict[str, Any]
                ) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DataSourceInstance",
            "metadata": {"name": name},
            "spec": {"pluginRef": {"name": plugin}, "uid": uid, "jsonData": json_data,
                     "secureJsonDataFrom": {
                         "apiKey": {"secretKeyRef": {"name": "datasource-creds",
                                                     "key": "apiKey"}},
                         "password": {"secretKeyRef": {"name": "datasource-creds",
                                                       "key": "password"}}}}}


def _access_objects() -> list[dict[str, Any]]:
    """Two ServiceAccounts; only ``allowed`` may query the namespace's datasources."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ALLOWED_SA}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DENIED_SA}},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": QUERIER_ROLE},
         "rules": [{"apiGroups": ["plugin-operator.dev"],
                    "resources": ["datasourceinstances"], "verbs": ["get", "query"]},
                   {"apiGroups": ["plugin-operator.dev"], "resources": ["plugins"],
                    "verbs": ["get"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "allowed-queries"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": QUERIER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": ALLOWED_SA}]},
    ]


@dataclass(frozen=True)
class GatewayClient:
    """Calls the gateway Service from the client pod inside the cluster."""

    plugins: Plugins
    release: Release
    base_url: str
    allowed_token: str
    denied_token: str

    def call(self, method: str, path: str, *, token: str | None = None,
             body: Any = None, sse_events: int = 0,
             timeout_s: float = 30) -> dict[str, Any]:
        """One HTTP call; returns {status, headers, body (text), json?, chunks, events}."""
        spec = {"method": method, "url": self.base_url + path, "token": token,
                "body": body, "sse_events": sse_events, "timeout": timeout_s}
        ran = self.plugins.cluster.python(self.plugins.namespace, CLIENT_POD, CALL,
                                          json.dumps(spec), check=False)
        assert ran.returncode == 0, (f"client call {method} {path} failed:\n{ran.stderr}\n"
                                     f"{self.gateway_logs()}")
        answer: dict[str, Any] = json.loads(ran.stdout)
        return answer

    def script(self, script: str, *args: str, timeout_s: float = 120
               ) -> subprocess.Popen[str]:
        """Start a Python script in the client pod; the caller waits for it."""
        cluster = self.plugins.cluster
        return subprocess.Popen(
            [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
             self.plugins.namespace, "exec", CLIENT_POD, "--", "timeout", str(int(timeout_s)),
             "python3", "-c", script, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def gateway_logs(self, tail: int = 80) -> str:
        return self.plugins.cluster.kubectl(
            "-n", self.release.namespace, "logs", f"deployment/{self.release.gateway_deployment}",
            f"--tail={tail}", check=False).stdout


@pytest.fixture(scope="session")
def gateway(cluster: Cluster, release: Release, plugin_namespace: str,
            signed_archives: SignedArchives,  # noqa: F811
            archive_server: ArchiveServer) -> GatewayClient:  # noqa: F811
    plugins = Plugins(cluster, release, plugin_namespace)
    plugins.archive_configmap("python-archive", signed_archives.python_v1)
    go_url = archive_server.publish(signed_archives.go, "sample-go.zip")
    plugins.apply(
        plugin_manifest("python", configmap="python-archive"),
        plugin_manifest("go", plugin_id=SAMPLE_GO_ID, version="1.0.0", url=go_url,
                        sha256=sha256_of(signed_archives.go), replicas=2),
        _secret("datasource-creds", apiKey=API_KEY, password=SECRET_ONLY),
        _datasource("python-ds", PYTHON_UID, "python",
                    {"endpoint": "https://metrics.example.invalid"}),
        _datasource("go-ds", GO_UID, "go", {"expectedApiKey": API_KEY}),
        *_access_objects(),
        restricted_pod(CLIENT_POD, cluster.image, SLEEP_FOREVER))
    def running(name: str, replicas: int) -> bool:
        status = plugins.status("plugin", name)
        return status.get("phase") == "Running" and status.get("readyReplicas") == replicas

    for name, replicas in (("python", 1), ("go", 2)):
        plugins.wait_for(f"Plugin {name} Running with {replicas} ready replicas",
                         functools.partial(running, name, replicas))
    cluster.wait_ready(plugin_namespace, CLIENT_POD)
    service = cluster.get(release.namespace, "service", release.gateway_deployment)
    port = service["spec"]["ports"][0]["port"]
    tokens = [cluster.kubectl("-n", plugin_namespace, "create", "token", account,
                              "--duration=1h").stdout.strip()
              for account in (ALLOWED_SA, DENIED_SA)]
    client = GatewayClient(plugins, release, f"http://{service['spec']['clusterIP']}:{port}",
                           *tokens)
    # The gateway's routing table and kube-proxy's rules follow the objects a moment later.
    plugins.wait_for("both datasources answering through the gateway", lambda: all(
        client.call("GET", f"/api/datasources/uid/{uid}/health",
                    token=client.allowed_token)["status"] == 200 for uid in (PYTHON_UID, GO_UID)),
                     timeout_s=120, interval_s=2)
    return client
