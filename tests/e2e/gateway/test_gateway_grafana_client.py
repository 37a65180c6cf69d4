"""grafana-client (PyPI), unchanged, against the chart's gateway on the real cluster through
``kubectl port-forward``: list, lookups by uid and name, health, health inquiry, a raw
query, plugins; no answer holds the datasources' secret."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, TokenAuth

from tests.e2e.gateway.conftest import GO_UID, PYTHON_UID, SECRET_ONLY, GatewayClient
from tests.support.net import free_port


@pytest.fixture(scope="module")
def forwarded(gateway: GatewayClient) -> Iterator[str]:
    cluster = gateway.plugins.cluster
    port = free_port()
    process = subprocess.Popen(
        [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
         gateway.release.namespace, "port-forward",
         f"service/{gateway.release.gateway_deployment}", f"{port}:80"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_grafana_client_drives_the_gateway(gateway: GatewayClient, forwarded: str) -> None:
    api = GrafanaApi.from_url(forwarded, credential=TokenAuth(gateway.allowed_token))
    seen: dict[str, Any] = {"version": api.version, "health": api.client.GET("/health")}
    assert seen["version"].split(".")[0].isdigit()
    assert seen["health"]["database"] == "ok"
    ds = api.datasource
    seen["list"] = ds.list_datasources()
    assert {d["uid"] for d in seen["list"]} >= {PYTHON_UID, GO_UID}
    seen["by_uid"] = ds.get_datasource_by_uid(GO_UID)
    assert seen["by_uid"]["access"] == "proxy"
    assert seen["by_uid"]["secureJsonFields"] == {"apiKey": True, "password": True}
    seen["by_name"] = ds.get_datasource_by_name("python-ds")
    assert seen["by_name"]["uid"] == PYTHON_UID
    seen["by_id"] = ds.get_datasource_by_id(seen["by_uid"]["id"])
    assert seen["by_id"]["uid"] == GO_UID
    seen["health_go"] = ds.health(GO_UID)
    assert seen["health_go"]["status"] == "OK", seen["health_go"]
    inquiry = ds.health_inquiry(PYTHON_UID)
    assert inquiry.success, inquiry
    seen["query"] = api.client.POST("/ds/query", json={
        "from": "now-1h", "to": "now",
        "queries": [{"refId": "G", "datasource": {"uid": GO_UID}, "queryType": "randomWalk",
                     "maxDataPoints": 10}]})
    assert seen["query"]["results"]["G"]["frames"], seen["query"]
    seen["plugins"] = api.plugin.list()
    assert seen["plugins"], seen
    with pytest.raises(GrafanaClientError) as refused:
        ds.delete_datasource_by_uid(GO_UID)
    assert refused.value.status_code == 405
    assert SECRET_ONLY not in json.dumps(seen)
    denied = GrafanaApi.from_url(forwarded, credential=TokenAuth(gateway.denied_token))
    assert denied.datasource.list_datasources() == []
