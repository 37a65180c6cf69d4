"""The cluster under test behaves like a cluster: the basics the operator relies on."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.kube import SLEEP_FOREVER, Cluster, restricted_pod

# A tiny HTTP server that answers with its own pod name, from our image's Python.
ECHO_SERVER = [
    "python3", "-c",
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ['POD_NAME'].encode()\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n",
]
ECHO_CONTAINER: dict[str, Any] = {
    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
}
HTTP_GET = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)


def test_the_node_is_ready(cluster: Cluster) -> None:
    nodes = cluster.get("default", "nodes")["items"]
    assert nodes, "the cluster has no nodes"
    for node in nodes:
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"], f"node {node['metadata']['name']} is not Ready: {ready}"


def test_pods_reach_each_other_by_ip_service_and_dns(cluster: Cluster, namespace: str) -> None:
    server = restricted_pod("echo", cluster.image, ECHO_SERVER, container=ECHO_CONTAINER)
    client = restricted_pod("client", cluster.image, SLEEP_FOREVER)
    service: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.apply(namespace, server, client, service)
    server_ip = cluster.wait_ready(namespace, "echo")["status"]["podIP"]
    client_ip = cluster.wait_ready(namespace, "client")["status"]["podIP"]
    assert server_ip
    assert client_ip
    assert server_ip != client_ip

    by_pod_ip = cluster.python(namespace, "client", HTTP_GET, f"http://{server_ip}:8080/")
    assert by_pod_ip.stdout.strip() == "echo"

    cluster_ip = cluster.get(namespace, "service", "echo")["spec"]["clusterIP"]
    by_service = cluster.python_eventually(namespace, "client", HTTP_GET, f"http://{cluster_ip}/")
    assert by_service.stdout.strip() == "echo"

    name = f"echo.{namespace}.svc.cluster.local"
    by_dns = cluster.python_eventually(namespace, "client", HTTP_GET, f"http://{name}/")
    assert by_dns.stdout.strip() == "echo"


def test_dns_resolves_the_kubernetes_service(cluster: Cluster, namespace: str) -> None:
    cluster.apply(namespace, restricted_pod("client", cluster.image, SLEEP_FOREVER))
    cluster.wait_ready(namespace, "client")
    resolved = cluster.python(
        namespace, "client",
        "import socket; print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))",
    ).stdout.strip()
    expected = cluster.get("default", "service", "kubernetes")["spec"]["clusterIP"]
    assert resolved == expected


def test_dns_answers_nothing_outside_the_cluster(cluster: Cluster, namespace: str) -> None:
    """Tests must not reach beyond the cluster: our CoreDNS serves cluster.local only."""
    if not cluster.local:
        pytest.skip("only hack/cluster.sh's CoreDNS is configured without upstream forwarding")
    cluster.apply(namespace, restricted_pod("client", cluster.image, SLEEP_FOREVER))
    cluster.wait_ready(namespace, "client")
    script = (
        "import socket\n"
        "try:\n"
        "    print(socket.gethostbyname('example.com'))\n"
        "except socket.gaierror as error:\n"
        "    print('unresolved', error.errno)\n"
    )
    answer = cluster.python(namespace, "client", script).stdout.strip()
    assert answer.startswith("unresolved"), f"example.com resolved to {answer}"


def test_service_account_token_is_mounted_and_accepted(cluster: Cluster, namespace: str) -> None:
    cluster.apply(namespace, restricted_pod("client", cluster.image, SLEEP_FOREVER,
                                            automount_token=True))
    cluster.wait_ready(namespace, "client")
    # Ask the apiserver who we are: it answers only for a token it accepts.
    script = (
        "import json, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(sa + '/token').read()\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "req = urllib.request.Request(\n"
        "    'https://kubernetes.default.svc/apis/authentication.k8s.io/v1/selfsubjectreviews',\n"
        "    data=json.dumps({'apiVersion': 'authentication.k8s.io/v1',\n"
        "                     'kind': 'SelfSubjectReview'}).encode(),\n"
        "    headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())\n"
    )
    review = json.loads(cluster.python(namespace, "client", script).stdout)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:default"


def test_logs_and_exec(cluster: Cluster, namespace: str) -> None:
    marker = uuid.uuid4().hex
    command = ["python3", "-c", f"import signal; print('{marker}', flush=True); signal.pause()"]
    cluster.apply(namespace, restricted_pod("talker", cluster.image, command))
    cluster.wait_ready(namespace, "talker")
    cluster.wait_for("the pod's log line", lambda: marker in cluster.kubectl(
        "-n", namespace, "logs", "talker").stdout)
    assert cluster.exec(namespace, "talker", "id", "-u").stdout.strip() == "65532"


def test_deployments_roll(cluster: Cluster, namespace: str) -> None:
    pod = restricted_pod("web", cluster.image, ECHO_SERVER, container=ECHO_CONTAINER)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod["spec"]},
        },
    }
    cluster.apply(namespace, deployment)
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=180s",
                    timeout=240)
    cluster.kubectl("-n", namespace, "set", "env", "deployment/web", "ROLLED=yes")
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=180s",
                    timeout=240)
    status = cluster.get(namespace, "deployment", "web")["status"]
    assert status.get("updatedReplicas") == 2
    assert status.get("readyReplicas") == 2
    sets = cluster.get(namespace, "replicasets", "-l", "app=web")["items"]
    assert len(sets) == 2, "a rollout leaves the old ReplicaSet scaled to zero"


def test_garbage_collection_deletes_owned_objects(cluster: Cluster, namespace: str) -> None:
    cluster.apply(namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "owner"}, "data": {}})
    owner_uid = cluster.get(namespace, "configmap", "owner")["metadata"]["uid"]
    cluster.apply(namespace, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "owned", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]},
        "data": {},
    })
    cluster.kubectl("-n", namespace, "delete", "configmap", "owner", "--cascade=background")
    cluster.wait_for("the garbage collector to delete the owned ConfigMap", lambda: cluster.kubectl(
        "-n", namespace, "get", "configmap", "owned", check=False).returncode != 0)
