"""The gateway against a real kube-apiserver: routing from watched objects, TokenReview and
SubjectAccessReview with real RBAC, Secret changes reaching the plugin."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from plugin_operator.models import naming
from plugin_operator.models.resources import API_VERSION
from tests.integration.gateway.conftest import PYTHON_PLUGIN_ID, PYTHON_SAMPLE
from tests.support.gateway_launcher import running_gateway
from tests.support.host_launcher import start_host
from tests.support.kube import ControlPlane
from tests.support.wait import eventually_async

pytestmark = pytest.mark.integration
QUERY = {"from": "now-1h", "to": "now",
         "queries": [{"refId": "A", "datasource": {"uid": "kube-uid"}, "maxDataPoints": 3}]}


def apply(plane: ControlPlane, *objects: dict[str, object]) -> None:
    plane.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": list(objects)}))


def patch_status(plane: ControlPlane, namespace: str, kind: str, name: str,
                 status: dict[str, object]) -> None:
    plane.kubectl("patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": status}))


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     seconds: float = 30) -> None:
    await eventually_async(what, check, timeout_s=seconds, interval_s=0.1)


async def test_routing_and_rbac_from_the_cluster(crds: ControlPlane, namespace: str,
                                                 tmp_path: Path) -> None:
    plane = crds
    ip = f"127.{random.randint(2, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    host = await start_host(PYTHON_SAMPLE, tmp_path / "host",
                            ["--grpc-bind", ip, "--grpc-port", str(naming.GRPC_PORT)])
    try:
        apply(plane,
              {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "creds", "namespace": namespace},
               "data": {"key": base64.b64encode(b"abc").decode()}},
              {"apiVersion": API_VERSION, "kind": "Plugin",
               "metadata": {"name": "testdata", "namespace": namespace},
               "spec": {"pluginId": PYTHON_PLUGIN_ID, "version": "1.0.0", "mode": "Pod",
                        "source": {"url": "http://127.0.0.1/testdata.zip"}}},
              {"apiVersion": API_VERSION, "kind": "DataSourceInstance",
               "metadata": {"name": "kube-ds", "namespace": namespace},
               "spec": {"pluginRef": {"name": "testdata"}, "uid": "kube-uid",
                        "jsonData": {"endpoint": "http://example.invalid"},
                        "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {
                            "name": "creds", "key": "key"}}}}},
              {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "testdata-0", "namespace": namespace,
                            "labels": {naming.LABEL_PLUGIN: "testdata"}},
               "spec": {"containers": [{"name": "plugin", "image": "example.invalid/x"}]}},
              {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "viewer", "namespace": namespace}},
              {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "stranger", "namespace": namespace}},
              {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "query-kube-ds", "namespace": namespace},
               "rules": [{"apiGroups": ["plugin-operator.dev"],
                          "resources": ["datasourceinstances"], "verbs": ["query"],
                          "resourceNames": ["kube-ds"]}]},
              {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "viewer-queries", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "query-kube-ds"},
               "subjects": [{"kind": "ServiceAccount", "name": "viewer",
                             "namespace": namespace}]})
        patch_status(plane, namespace, "datasourceinstance", "kube-ds", {"settingsVersion": 1})
        patch_status(plane, namespace, "pod", "testdata-0", {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}]})
        viewer = plane.kubectl("create", "token", "viewer", "-n", namespace).stdout.strip()
        stranger = plane.kubectl("create", "token", "stranger", "-n", namespace).stdout.strip()
        async with running_gateway(None, tmp_path / "gw",
                                   ["--kubeconfig", str(plane.kubeconfig),
                                    "--namespace", namespace,
                                    "--auth-cache-seconds", "0.01"]) as gateway, \
                aiohttp.ClientSession() as http:
            url = f"{gateway.url}/api/ds/query"

            async def status_with(token: str | None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.post(url, json=QUERY, headers=headers) as answer:
                    await answer.read()
                    return answer.status

            async def served() -> bool:
                return await status_with(viewer) == 200

            await eventually(served, "the watched datasource is routed")
            assert await status_with(stranger) == 403
            assert await status_with(None) == 401
            assert await status_with("not-a-token") == 401
            async with http.post(url, json=QUERY,
                                 headers={"Authorization": f"Bearer {stranger}"}) as answer:
                body = await answer.json()
            assert "query on datasourceinstances 'kube-ds'" in body["message"]

            async def key_length() -> int:
                async with http.get(f"{gateway.url}/api/datasources/uid/kube-uid/health",
                                    headers={"Authorization": f"Bearer {viewer}"}) as answer:
                    return int((await answer.json())["details"]["keyLength"])

            assert await key_length() == 3
            # A Secret change plus the new settingsVersion the operator would write.
            apply(plane, {"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "creds", "namespace": namespace},
                          "data": {"key": base64.b64encode(b"longer-key").decode()}})
            patch_status(plane, namespace, "datasourceinstance", "kube-ds",
                         {"settingsVersion": 2})

            async def rotated() -> bool:
                return await key_length() == len("longer-key")

            await eventually(rotated, "the rotated Secret reaches the plugin")
            plane.kubectl("delete", "pod", "testdata-0", "-n", namespace, "--wait=false")

            async def unavailable() -> bool:
                return await status_with(viewer) == 503

            await eventually(unavailable, "a deleted backend pod stops being routed to")
    finally:
        await host.stop()
