"""The user's journey, in the order a user walks it: install with Helm, apply the examples,
use them through the gateway, watch them with Prometheus, see NetworkPolicy hold, upgrade
without losing queries, uninstall without leftovers. The tests share one release and run
in this file's order; the last one uninstalls it."""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.install import CHART, Release
from tests.e2e.journey.conftest import (
    GATEWAY_PORT,
    Gateway,
    Prometheus,
    wait_for,
)
from tests.e2e.kube import (
    KILL_PLUGIN,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Cluster,
)

pytestmark = pytest.mark.usefixtures("examples_running")

PLUGIN = "testdata-python"
UID = "testdata"
EXECUTABLE = "gpx_testdata_python_linux"
GRPC_PORT = 10000
# Bounds of the load kept up during `helm upgrade`: one query every LOAD_INTERVAL_S, at most
# LOAD_MAX_REQUESTS in all.
LOAD_INTERVAL_S = 0.2
LOAD_MAX_REQUESTS = 1500


# Runs in a pod: exit 0 when a TCP connection to argv[1]:argv[2] succeeds within 3 s.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
except OSError as error:
    print(f'{type(error).__name__}: {error}')
    sys.exit(1)
"""


def backend_pods(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    pods = cluster.get(namespace, "pods", "-l", f"plugin-operator.dev/plugin={PLUGIN}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_queries_resources_health_and_streams_through_the_gateway(gateway: Gateway) -> None:
    answer = gateway.query(UID, scenario="random_walk", seriesCount=2)
    assert answer.status == 200, answer.body
    frames = answer.json()["results"]["A"]["frames"]
    assert len(frames) == 2, frames
    assert all(f["data"]["values"][0] for f in frames), frames

    resource = gateway.request("GET", f"/api/datasources/uid/{UID}/resources/json")
    assert resource.status == 200, resource.body
    assert resource.json() == {"uid": UID, "message": "hello from python"}

    health = gateway.request("GET", f"/api/datasources/uid/{UID}/health")
    assert health.status == 200, health.body
    assert health.json()["status"] == "OK"

    data = urllib.parse.quote(json.dumps({"count": 3, "interval": 0.05}))
    request = urllib.request.Request(
        f"{gateway.base_url}/api/streams/ds/{UID}/counter?data={data}",
        headers={"Authorization": f"Bearer {gateway.token}"})
    values: list[int] = []
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.status == 200
        for raw in stream:
            line = raw.decode().strip()
            # The first packet carries the frame's schema, the next ones only its values.
            if line.startswith("data:") and '"values"' in line:
                values.extend(json.loads(line[5:])["data"]["values"][0])
            if len(values) >= 3 or line == "event: end":
                break
    assert values[:3] == [0, 1, 2], values


def test_prometheus_sees_request_counts_rise(gateway: Gateway, prometheus: Prometheus) -> None:
    def all_up(job: str) -> bool:
        return prometheus.query(f'min(up{{job="{job}"}})') == 1.0

    for job in ("operator", "gateway", "plugin-hosts"):
        wait_for(f"Prometheus scraping job {job}", functools.partial(all_up, job), timeout_s=90,
                 diagnostics=lambda: json.dumps(prometheus.targets(), indent=1)[-4000:])

    gateway_requests = f'sum(plugin_gateway_requests_total{{datasource_uid="{UID}"}})'
    host_bytes = 'sum(plugin_operator_host_forwarded_bytes_total{direction="from_plugin"})'
    gateway_before = prometheus.query(gateway_requests) or 0.0
    host_before = prometheus.query(host_bytes) or 0.0
    for _ in range(10):
        assert gateway.query(UID, scenario="random_walk").status == 200
    wait_for("the gateway's request count to rise by 10", lambda: (
        prometheus.query(gateway_requests) or 0.0) >= gateway_before + 10, timeout_s=60)
    # Ten random walks are well over a kilobyte of frames from the plugins.
    wait_for("the bytes the plugin hosts forwarded to rise", lambda: (
        prometheus.query(host_bytes) or 0.0) >= host_before + 1000, timeout_s=60)


def test_prometheus_sees_a_backend_restart(cluster: Cluster, plugin_namespace: str,
                                           gateway: Gateway, prometheus: Prometheus) -> None:
    restarts = f'sum(plugin_operator_backend_restarts_total{{plugin="{PLUGIN}"}})'
    wait_for("the operator's metrics in Prometheus", lambda: prometheus.query(
        'up{job="operator"}') == 1.0, timeout_s=60)
    before = prometheus.query(restarts) or 0.0
    pod = str(backend_pods(cluster, plugin_namespace)[0]["metadata"]["name"])  # type: ignore[index]
    killed = cluster.exec(plugin_namespace, pod, "python3", "-c", KILL_PLUGIN, EXECUTABLE)
    assert killed.stdout.strip(), f"no process named {EXECUTABLE} in {pod}"
    wait_for("plugin_operator_backend_restarts_total to rise", lambda: (
        prometheus.query(restarts) or 0.0) > before, timeout_s=120)
    wait_for("the backend to serve again", lambda: gateway.query(
        UID, scenario="random_walk").status == 200, timeout_s=120)


def test_network_policy_admits_the_gateway_not_other_pods(
        cluster: Cluster, release: Release, plugin_namespace: str) -> None:
    ns = plugin_namespace
    backend_ip = str(backend_pods(cluster, ns)[0]["status"]["podIP"])  # type: ignore[index]
    client = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "not-the-gateway"},
        "spec": {
            "securityContext": RESTRICTED_POD_SECURITY, "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": cluster.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", "import time; time.sleep(3600)"],
                            "securityContext": RESTRICTED_CONTAINER_SECURITY}]},
    }
    cluster.apply(ns, client)
    try:
        cluster.wait_ready(ns, "not-the-gateway")
        gateway_pod = cluster.get(release.namespace, "pods", "-l",
                                  "app.kubernetes.io/component=gateway")["items"][0]
        gateway_ip = gateway_pod["status"]["podIP"]
        # The client pod has a working network: it reaches the gateway, which no policy guards.
        reach_gateway = cluster.exec(ns, "not-the-gateway", "python3", "-c", CONNECT,
                                     gateway_ip, str(GATEWAY_PORT), check=False)
        assert reach_gateway.returncode == 0, reach_gateway.stdout + reach_gateway.stderr
        # ...but not the plugin backend's gRPC or metrics port.
        for port in (GRPC_PORT, 9100):
            blocked = cluster.exec(ns, "not-the-gateway", "python3", "-c", CONNECT,
                                   backend_ip, str(port), check=False)
            assert blocked.returncode != 0, f"a pod that is not the gateway reached {port}"
        # The gateway does reach the backend's gRPC port.
        allowed = cluster.exec(release.namespace, gateway_pod["metadata"]["name"], "python3",
                               "-c", CONNECT, backend_ip, str(GRPC_PORT), check=False)
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    finally:
        cluster.kubectl("-n", ns, "delete", "pod", "not-the-gateway", "--wait=false",
                        check=False)


def test_helm_upgrade_rolls_the_gateway_without_losing_queries(
        cluster: Cluster, release: Release, gateway: Gateway,
        tmp_path: Path) -> None:
    def gateway_pods() -> set[str]:
        items = cluster.get(release.namespace, "pods", "-l",
                            "app.kubernetes.io/component=gateway")["items"]
        return {p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}

    before = gateway_pods()
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def steady_load() -> None:
        for _ in range(LOAD_MAX_REQUESTS):
            if stop.is_set():
                return
            try:
                outcomes[str(gateway.query(UID, scenario="random_walk", timeout_s=10).status)] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1
            time.sleep(LOAD_INTERVAL_S)

    load = threading.Thread(target=steady_load, daemon=True)
    values = tmp_path / "values.json"
    values.write_text(json.dumps(release.values))
    load.start()
    try:
        release.helm_run("upgrade", release.name, str(CHART), "--namespace", release.namespace,
                         "--values", str(values), "--set-string",
                         "gateway.podAnnotations.journey-revision=2", "--wait",
                         "--timeout", "5m")
        cluster.kubectl("-n", release.namespace, "rollout", "status",
                        f"deployment/{release.gateway_deployment}", "--timeout=180s",
                        timeout=200)
        time.sleep(3)  # some queries against the new gateways only
    finally:
        stop.set()
        load.join(timeout=60)
    after = gateway_pods()
    assert not before & after, f"the gateways did not roll: {before} -> {after}"
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] >= 10, outcomes


def test_helm_uninstall_leaves_no_pods_or_services(
        cluster: Cluster, release: Release, plugin_namespace: str) -> None:
    ns = plugin_namespace
    # The chart keeps the plugin namespaces and what users put there; backends belong to their
    # Plugins, so (as docs/helm.md says) Plugins go first, while the operator still runs.
    cluster.kubectl("-n", ns, "delete", "datasourceinstances,plugins", "--all", "--wait=true",
                    "--timeout=120s", timeout=150)
    release.helm_run("uninstall", release.name, "--namespace", release.namespace, "--wait",
                     "--timeout", "5m")

    def ours() -> str:
        by_release = cluster.kubectl(
            "get", "pods,services,deployments,networkpolicies", "-A", "-l",
            f"app.kubernetes.io/instance={release.name}", "-o", "name").stdout.strip()
        by_operator = cluster.kubectl(
            "-n", ns, "get", "pods,services", "-l", "app.kubernetes.io/managed-by=plugin-operator",
            "-o", "name").stdout.strip()
        in_release_ns = cluster.kubectl(
            "-n", release.namespace, "get", "pods,services", "-o", "name").stdout.strip()
        return "\n".join(filter(None, [by_release, by_operator, in_release_ns]))

    wait_for("no pods or services of the release", lambda: ours() == "", timeout_s=120,
             diagnostics=ours)
    # Helm's rule: CRDs outlive the release (deleting them would delete every user's objects).
    crds = cluster.kubectl("get", "crd", "plugins.plugin-operator.dev", check=False)
    assert crds.returncode == 0, "helm uninstall must leave the CRDs in place"
