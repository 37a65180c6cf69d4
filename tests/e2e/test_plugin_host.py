"""Smoke: the Python sample plugin runs in our image under `plugin-operator host`, in a
namespace that enforces the `restricted` Pod Security Standard, and answers gRPC from another
pod, by pod IP and through a ClusterIP Service; when the plugin dies the host restarts it, and
when it keeps dying the container restarts.

The plugin directory reaches the pod as a ConfigMap volume (all its files are small).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, create_namespace, delete_namespace
from tests.e2e.kube import KILL_PLUGIN, SLEEP_FOREVER, Cluster, restricted_pod

PLUGIN_DIR = REPO_ROOT / "plugins" / "testdata-python"
PLUGIN_ID = "plugin-operator-testdata-datasource"
GRPC_PORT = 10000
HTTP_PORT = 9100
MOUNT = "/plugins/testdata-python"

# Runs in the client pod (our image has the package): CheckHealth on the plugin at argv[1].
CHECK_HEALTH = f"""
import asyncio, json, sys
from plugin_operator.protocol.client import PluginClient
from plugin_operator.protocol.models import (
    CheckHealthRequest, DataSourceInstanceSettings, PluginContext)

async def main(target: str) -> None:
    settings = DataSourceInstanceSettings(
        uid="e2e", name="e2e", json_data=b'{{"endpoint": "e2e-endpoint"}}',
        decrypted_secure_json_data={{"apiKey": "e2e-key"}})
    context = PluginContext(plugin_id="{PLUGIN_ID}", datasource_instance_settings=settings)
    async with PluginClient(target, timeout=20) as client:
        result = await client.check_health(CheckHealthRequest(plugin_context=context))
    print(json.dumps({{"status": result.status.name, "message": result.message}}))

asyncio.run(main(sys.argv[1]))
"""

# Runs in the plugin pod: print the host's report of the plugin restarts it did.
HOST_RESTARTS = """
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/restarts", timeout=5).read().decode())
"""



@dataclass(frozen=True)
class PluginDeployment:
    namespace: str
    pod_ip: str
    service_ip: str


def plugin_configmap() -> dict[str, Any]:
    files = sorted(p for p in PLUGIN_DIR.iterdir() if p.is_file())
    assert any(p.name == "plugin.json" for p in files), f"no plugin.json in {PLUGIN_DIR}"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "testdata-python"},
        "data": {p.name: p.read_text() for p in files},
    }


def plugin_pod(image: str) -> dict[str, Any]:
    command = ["plugin-operator", "host", MOUNT, "--grpc-port", str(GRPC_PORT),
               "--http-port", str(HTTP_PORT)]
    return restricted_pod(
        "plugin", image, command,
        labels={"app": "plugin"},
        container={
            "ports": [{"name": "grpc", "containerPort": GRPC_PORT},
                      {"name": "http", "containerPort": HTTP_PORT}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": HTTP_PORT},
                               "periodSeconds": 2},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                             {"name": "plugin", "mountPath": MOUNT, "readOnly": True}],
        },
        volumes=[{"name": "plugin",
                  "configMap": {"name": "testdata-python", "defaultMode": 0o555}}],
    )


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> Iterator[PluginDeployment]:
    namespace = create_namespace(cluster, "plugin-host")
    try:
        service = {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "plugin"},
            "spec": {"selector": {"app": "plugin"},
                     "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"}]},
        }
        cluster.apply(namespace, plugin_configmap(), plugin_pod(cluster.image), service,
                      restricted_pod("client", cluster.image, SLEEP_FOREVER))
        pod = cluster.wait_ready(namespace, "plugin")
        cluster.wait_ready(namespace, "client")
        service_ip = cluster.get(namespace, "service", "plugin")["spec"]["clusterIP"]
        yield PluginDeployment(namespace, pod["status"]["podIP"], service_ip)
    finally:
        delete_namespace(cluster, namespace)


def check_health(cluster: Cluster, deployed: PluginDeployment, target: str) -> dict[str, Any]:
    out = cluster.python_eventually(deployed.namespace, "client", CHECK_HEALTH, target).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_grpc_by_pod_ip(cluster: Cluster, deployed: PluginDeployment) -> None:
    result = check_health(cluster, deployed, f"{deployed.pod_ip}:{GRPC_PORT}")
    assert result == {"status": "OK", "message": "connected to e2e-endpoint"}


def test_grpc_through_the_cluster_ip_service(cluster: Cluster, deployed: PluginDeployment) -> None:
    result = check_health(cluster, deployed, f"{deployed.service_ip}:{GRPC_PORT}")
    assert result == {"status": "OK", "message": "connected to e2e-endpoint"}
    by_name = check_health(cluster, deployed, f"plugin.{deployed.namespace}.svc:{GRPC_PORT}")
    assert by_name == result


def test_the_pod_meets_the_restricted_standard(
    cluster: Cluster, deployed: PluginDeployment
) -> None:
    labels = cluster.get("default", "namespace", deployed.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The namespace really enforces it: a pod that breaks the standard is refused...
    offender = plugin_pod(cluster.image)
    offender["metadata"]["name"] = "offender"
    offender["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
    refused = cluster.kubectl("-n", deployed.namespace, "apply", "--dry-run=server", "-f", "-",
                              stdin=json.dumps(offender), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr
    # ... so ours, admitted and running, meets it; and inside it is what the spec says.
    assert cluster.exec(deployed.namespace, "plugin", "id", "-u").stdout.strip() == "65532"
    write = cluster.exec(deployed.namespace, "plugin", "touch", "/written", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr


def test_a_killed_plugin_restarts_in_its_container_and_a_crash_loop_in_a_new_one(
    cluster: Cluster, deployed: PluginDeployment
) -> None:
    namespace = deployed.namespace

    def container() -> dict[str, Any]:
        status: dict[str, Any] = cluster.get(namespace, "pod", "plugin")["status"]
        return dict(status["containerStatuses"][0])

    def host_report() -> dict[str, Any]:
        out = cluster.python(namespace, "plugin", HOST_RESTARTS, str(HTTP_PORT)).stdout
        report: dict[str, Any] = json.loads(out)
        return report

    def kill() -> list[str]:
        # While the kubelet restarts the container there is nothing to exec into: no kill.
        return cluster.python(namespace, "plugin", KILL_PLUGIN, "gpx_testdata_python",
                              "testdata_plugin", check=False).stdout.split()

    before = int(container()["restartCount"])
    restarts_before = host_report()["restarts"]
    assert kill(), "no plugin process found in the plugin container"
    # The host restarts it in the same container: the kubelet sees no restart.
    report = cluster.wait_for("the host's report of the restart", lambda: (
        r := host_report())["restarts"] == restarts_before + 1 and r)
    assert report["last"]["exitCode"] == -9, report
    assert "killed by SIGKILL" in report["last"]["message"], report
    result = check_health(cluster, deployed, f"{deployed.pod_ip}:{GRPC_PORT}")
    assert result["status"] == "OK"
    assert int(container()["restartCount"]) == before

    # A crash loop is not restarted for ever in the container: after six exits within a
    # minute the host exits, and the kubelet restarts the container with its own backoff.
    def crash_until_the_container_restarts() -> bool:
        if int(container().get("restartCount", 0)) > before:
            return True
        kill()
        return False

    cluster.wait_for("the container restarted after repeated crashes",
                     crash_until_the_container_restarts, timeout_s=90)
    pod = cluster.wait_ready(namespace, "plugin")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] != 0
    assert "killed by SIGKILL" in last.get("message", ""), "the host wrote no termination message"
    result = check_health(cluster, deployed, f"{deployed.pod_ip}:{GRPC_PORT}")
    assert result["status"] == "OK"
