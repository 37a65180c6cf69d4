"""grafana-client (PyPI), unchanged, against a gateway on loopback with both samples behind
it: datasource list and lookups, health, health inquiry, a raw query, plugins; and no
registry answer ever holds a secret value."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from tests.integration.gateway.conftest import GO_PLUGIN_ID, PYTHON_PLUGIN_ID, Stack

pytestmark = pytest.mark.integration
SECRETS = ("s3cret",)  # the conftest's Secret values ("k" is too short to grep for)


def drive(url: str) -> dict[str, Any]:
    """What a script using grafana-client sees (blocking; run in a thread)."""
    api = GrafanaApi.from_url(url)
    seen: dict[str, Any] = {"build": api.health.check(), "version": api.version,
                            "health": api.client.GET("/health")}
    ds = api.datasource
    seen["list"] = ds.list_datasources()
    seen["by_uid"] = ds.get_datasource_by_uid("py-uid")
    seen["by_name"] = ds.get_datasource_by_name("go")
    seen["by_id"] = ds.get_datasource_by_id(seen["by_uid"]["id"])
    seen["id_by_name"] = ds.get_datasource_id_by_name("py")
    seen["ds_health"] = ds.health("go-uid")
    seen["inquiry"] = ds.health_inquiry("go-uid")
    seen["query"] = api.client.POST("/ds/query", json={
        "from": "now-1h", "to": "now",
        "queries": [{"refId": "A", "datasource": {"uid": "go-uid"}, "queryType": "table"}]})
    seen["plugins"] = api.plugin.list()
    seen["errors"] = api.client.GET("/plugins/errors")
    seen["settings"] = api.client.GET(f"/plugins/{GO_PLUGIN_ID}/settings")
    try:
        ds.create_datasource({"name": "x", "type": "prometheus"})
        seen["create"] = None
    except GrafanaClientError as exc:
        seen["create"] = (exc.status_code, exc.response)
    try:
        ds.get_datasource_by_uid("missing")
        seen["missing"] = None
    except GrafanaClientError as exc:
        seen["missing"] = (exc.status_code, exc.response)
    return seen


async def test_grafana_client_works_unchanged(stack: Stack) -> None:
    seen = await asyncio.to_thread(drive, stack.url)
    assert seen["health"]["database"] == "ok"
    assert seen["build"]["version"] == DEFAULT_GRAFANA_VERSION
    assert seen["version"] == DEFAULT_GRAFANA_VERSION
    assert sorted(d["uid"] for d in seen["list"]) == ["go-uid", "py-nokey-uid", "py-uid"]
    assert seen["by_uid"]["type"] == PYTHON_PLUGIN_ID
    assert seen["by_uid"]["access"] == "proxy"
    assert seen["by_uid"]["jsonData"] == {"endpoint": "http://example.invalid"}
    assert seen["by_uid"]["secureJsonFields"] == {"apiKey": True}
    assert seen["by_name"]["uid"] == "go-uid"
    assert seen["by_id"]["uid"] == "py-uid"
    assert seen["id_by_name"] == {"id": seen["by_uid"]["id"]}
    assert seen["ds_health"]["status"] == "OK", seen["ds_health"]
    assert seen["inquiry"].success, seen["inquiry"]
    result = seen["query"]["results"]["A"]
    assert result["status"] == 200
    assert result["frames"], result
    assert {p["id"] for p in seen["plugins"]} >= {GO_PLUGIN_ID, PYTHON_PLUGIN_ID}
    assert seen["errors"] == []
    assert seen["settings"]["id"] == GO_PLUGIN_ID
    status, body = seen["create"]
    assert status == 405
    assert "kubectl" in body["message"]
    status, body = seen["missing"]
    assert (status, body["statusCode"]) == (404, 404)
    answers = json.dumps({k: v for k, v in seen.items() if k != "inquiry"})
    for secret in SECRETS:
        assert secret not in answers
