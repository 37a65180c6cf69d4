"""A release that traces, on the real cluster: an OTLP receiver of the test's own, the chart
told to export there (``tracing.otlpEndpoint``), and the signed Go sample queried through
the gateway.

The receiver is a pod of our image in the plugin namespace (the image has OpenTelemetry's
protobuf messages and gRPC): it prints one JSON line per span it is sent, which the test
reads back with ``kubectl logs``. The backends' NetworkPolicy lets them reach it through
``networkPolicy.extraEgress``, as docs/observability.md tells users to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import scoped_namespace
from tests.e2e.install import Release, install_release
from tests.e2e.kube import SLEEP_FOREVER, Cluster, restricted_pod
from tests.e2e.operator.conftest import (  # noqa: F401 - fixtures used by this suite
    API_VERSION,
    QUICK_BACKOFF,
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
)

RECEIVER = "otlp-receiver"
OTLP_PORT = 4317
CLIENT_POD = "trace-client"
QUERIER = "querier"
GO_UID = "e2e-traced-go"
API_KEY = "e2e-traced-key"  # in the datasource's jsonData too: not a secret

# The receiver: OTLP/gRPC's TraceService, one JSON line per span on stdout.
RECEIVE = r"""
import json
from concurrent import futures
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as rpc

class Receiver(rpc.TraceServiceServicer):
    def Export(self, request, context):
        for batch in request.resource_spans:
            service = next((a.value.string_value for a in batch.resource.attributes
                            if a.key == "service.name"), "")
            for scope in batch.scope_spans:
                for span in scope.spans:
                    print(json.dumps({"service": service, "name": span.name,
                                      "trace_id": span.trace_id.hex(),
                                      "span_id": span.span_id.hex(),
                                      "parent": span.parent_span_id.hex()}), flush=True)
        return pb.ExportTraceServiceResponse()

server = grpc.server(futures.ThreadPoolExecutor(4))
rpc.add_TraceServiceServicer_to_server(Receiver(), server)
server.add_insecure_port("0.0.0.0:OTLP_PORT")
server.start()
print("listening", flush=True)
server.wait_for_termination()
""".replace("OTLP_PORT", str(OTLP_PORT))

# argv: url, token, extra headers (JSON), body (JSON). Prints {"status", "body"}.
POST = r"""
import asyncio, json, sys
import aiohttp

url, token, extra, body = sys.argv[1:5]

async def main():
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
               **json.loads(extra)}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body, headers=headers) as response:
            print(json.dumps({"status": response.status, "body": await response.text()}))

asyncio.run(main())
"""


def _receiver_objects() -> list[dict[str, Any]]:
    pod = restricted_pod(RECEIVER, "IMAGE", ["python3", "-c", RECEIVE], container={
        "ports": [{"containerPort": OTLP_PORT, "name": "otlp-grpc"}],
        "readinessProbe": {"tcpSocket": {"port": OTLP_PORT}, "periodSeconds": 1}})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": RECEIVER},
               "spec": {"selector": {"app": RECEIVER},
                        "ports": [{"name": "otlp-grpc", "port": OTLP_PORT,
                                   "targetPort": OTLP_PORT, "appProtocol": "grpc"}]}}
    return [pod, service]


def _querier_objects() -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": QUERIER}},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": QUERIER},
         "rules": [{"apiGroups": ["plugin-operator.dev"],
                    "resources": ["datasourceinstances"], "verbs": ["get", "query"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": QUERIER},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": QUERIER},
         "subjects": [{"kind": "ServiceAccount", "name": QUERIER}]},
    ]


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "traces") as name:
        objects = _receiver_objects()
        objects[0]["spec"]["containers"][0]["image"] = cluster.image
        cluster.apply(name, *objects)
        yield name


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,  # noqa: F811
            signed_archives: SignedArchives,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    endpoint = f"{RECEIVER}.{plugin_namespace}.svc:{OTLP_PORT}"
    installed = install_release(
        cluster, helm_binary, tmp_path_factory.mktemp("helm-traces"),
        plugin_namespaces=[plugin_namespace],
        trusted_keys={"e2e-signer.asc": signed_archives.public_key.read_text()},
        allow_unsigned=[TESTDATA_ID], prefix="tr-e2e",
        values={"operator": {"backoff": QUICK_BACKOFF},
                "tracing": {"otlpEndpoint": endpoint},
                "networkPolicy": {"extraEgress": [
                    {"to": [{"podSelector": {"matchLabels": {"app": RECEIVER}}}],
                     "ports": [{"protocol": "TCP", "port": OTLP_PORT}]}]}})
    try:
        yield installed
    finally:
        installed.uninstall()


@dataclass(frozen=True)
class TracedSetup:
    plugins: Plugins
    query_url: str
    token: str

    @property
    def cluster(self) -> Cluster:
        return self.plugins.cluster

    def post(self, path: str, body: str, headers: str = "{}") -> dict[str, Any]:
        ran = self.cluster.python(self.plugins.namespace, CLIENT_POD, POST,
                                  self.query_url + path, self.token, headers, body,
                                  check=False)
        assert ran.returncode == 0, ran.stderr
        answer: dict[str, Any] = json.loads(ran.stdout)
        return answer

    def received_spans(self) -> list[dict[str, str]]:
        logs = self.cluster.kubectl("-n", self.plugins.namespace, "logs", RECEIVER).stdout
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def traced(cluster: Cluster, release: Release, plugin_namespace: str,
           signed_archives: SignedArchives,  # noqa: F811
           archive_server: ArchiveServer) -> TracedSetup:  # noqa: F811
    plugins = Plugins(cluster, release, plugin_namespace)
    go_url = archive_server.publish(signed_archives.go, "sample-go.zip")
    plugins.apply(
        plugin_manifest("go", plugin_id=SAMPLE_GO_ID, version="1.0.0", url=go_url,
                        sha256=sha256_of(signed_archives.go)),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"apiKey": API_KEY}},
        {"apiVersion": API_VERSION, "kind": "DataSourceInstance",
         "metadata": {"name": "go-ds"},
         "spec": {"pluginRef": {"name": "go"}, "uid": GO_UID,
                  "jsonData": {"expectedApiKey": API_KEY},
                  "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {"name": "creds",
                                                                     "key": "apiKey"}}}}},
        *_querier_objects(),
        restricted_pod(CLIENT_POD, cluster.image, SLEEP_FOREVER))
    plugins.wait_for("Plugin go Running with its replica ready", lambda: (
        (s := plugins.status("plugin", "go")).get("phase") == "Running"
        and s.get("readyReplicas") == 1))
    cluster.wait_ready(plugin_namespace, RECEIVER)
    cluster.wait_ready(plugin_namespace, CLIENT_POD)
    service = cluster.get(release.namespace, "service", release.gateway_deployment)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    token = cluster.kubectl("-n", plugin_namespace, "create", "token", QUERIER,
                            "--duration=1h").stdout.strip()
    return TracedSetup(plugins, url, token)
