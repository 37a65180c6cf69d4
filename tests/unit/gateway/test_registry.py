"""Grafana's registry routes in process: datasources in Grafana's shapes (never a secret
value), read-only with 405, /api/health, plugin errors and settings, JSON errors everywhere;
the header forwarding table and the query body encoding."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from plugin_operator.gateway import context
from plugin_operator.gateway.access import Gatekeeper, Permission
from plugin_operator.gateway.errors import GatewayError
from plugin_operator.gateway.query import QueryResult, encode_results, failed_results
from plugin_operator.gateway.routing import Kind, RoutingTable, stable_datasource_id
from plugin_operator.gateway.server import Gateway, GatewayConfig
from plugin_operator.kube.reviews import Identity
from plugin_operator.models.resources import ObjectRef
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from tests.support.gateway_launcher import datasource_object, plugin_object, secret_object

SECRET = "s3cret-value-never-shown"
GOOD = {"Authorization": "Bearer good"}


async def review_token(token: str) -> Identity | None:
    return Identity("alice") if token == "good" else None


async def review_access(identity: Identity, permission: Permission) -> bool:
    return permission.name != "hidden" and permission.namespace != "team-b"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[Gateway, TestClient[Any, Any]]]:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Pod", status={
        "phase": "Running", "plugin": {"type": "datasource", "name": "TestData"}}))
    table.apply(Kind.PLUGIN, plugin_object("bad", "bad-app", mode="Pod", status={
        "phase": "Rejected", "message": "[signatureModified] files changed",
        "plugin": {"type": "app"}, "signature": {"status": "modified",
                                                 "errorCode": "signatureModified"}}))
    table.apply(Kind.PLUGIN, plugin_object("app", "good-app", mode="Pod",
                                           app={"jsonData": {"a": 1}}))
    table.apply(Kind.SECRET, secret_object("creds", {"apiKey": SECRET}))
    table.apply(Kind.DATASOURCE, datasource_object(
        "ds", "uid-1", "td", json_data={"endpoint": "http://x", "keepCookies": ["k"]},
        secure_from={"apiKey": ("creds", "apiKey")}))
    table.apply(Kind.DATASOURCE, datasource_object("hidden", "uid-hidden", "td"))
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", "team-b", mode="Pod"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-b", "td", "team-b"))
    gateway = Gateway(table, Gatekeeper(review_token, review_access),
                      GatewayConfig(asset_cache_dir=tmp_path))
    gateway.synced = True
    test_client = TestClient(TestServer(gateway.app()))
    await test_client.start_server()
    try:
        yield gateway, test_client
    finally:
        await test_client.close()
        await gateway.upstream.close()


async def call(client: TestClient[Any, Any], method: str, path: str,
               headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with client.request(method, path, headers=GOOD if headers is None else headers
                              ) as response:
        body = await response.read()
        assert response.headers["Content-Type"].startswith("application/json"), body
        return response.status, json.loads(body), body


async def test_datasources_in_grafanas_shapes_without_secret_values(
        client: tuple[Gateway, TestClient[Any, Any]]) -> None:
    _, c = client
    ds_id = stable_datasource_id(ObjectRef("default", "ds"))
    status, listed, raw_list = await call(c, "GET", "/api/datasources")
    assert status == 200
    assert [d["uid"] for d in listed] == ["uid-1"]  # hidden and team-b are not readable
    item = listed[0]
    assert item == {"id": ds_id, "uid": "uid-1", "orgId": 1, "name": "ds", "type": "testdata",
                    "typeName": "TestData", "typeLogoUrl": "", "access": "proxy", "url": "",
                    "user": "", "database": "", "basicAuth": False, "isDefault": False,
                    "jsonData": {"endpoint": "http://x", "keepCookies": ["k"]},
                    "readOnly": True}
    answers = [raw_list]
    for path in ("/api/datasources/uid/uid-1", "/api/datasources/name/ds",
                 f"/api/datasources/{ds_id}"):
        status, found, raw = await call(c, "GET", path)
        assert status == 200, found
        assert found["id"] == ds_id
        assert found["type"] == "testdata"
        assert found["access"] == "proxy"
        assert found["secureJsonFields"] == {"apiKey": True}
        answers.append(raw)
    status, found, raw = await call(c, "GET", "/api/datasources/id/ds")
    assert (status, found) == (200, {"id": ds_id})
    answers.append(raw)
    for raw in answers:
        assert SECRET.encode() not in raw


async def test_lookups_fail_in_grafanas_json_error_shape(
        client: tuple[Gateway, TestClient[Any, Any]]) -> None:
    _, c = client
    status, body, _ = await call(c, "GET", "/api/datasources/uid/nope")
    assert status == 404
    assert body["statusCode"] == 404
    assert "nope" in body["message"]
    status, body, _ = await call(c, "GET", "/api/datasources/uid/uid-hidden")
    assert status == 403
    # The name exists in two namespaces; only the one the caller may read is found.
    status, body, _ = await call(c, "GET", "/api/datasources/name/ds")
    assert (status, body["uid"]) == (200, "uid-1")
    status, body, _ = await call(c, "GET", "/api/datasources/abc")
    assert status == 400
    status, body, _ = await call(c, "GET", "/api/datasources", headers={})
    assert status == 401


async def test_writes_are_refused_with_405_pointing_at_kubectl(
        client: tuple[Gateway, TestClient[Any, Any]]) -> None:
    _, c = client
    for method, path in (("POST", "/api/datasources"), ("PUT", "/api/datasources/uid/uid-1"),
                         ("DELETE", "/api/datasources/name/ds"),
                         ("DELETE", "/api/datasources/12")):
        async with c.request(method, path, headers=GOOD) as response:
            body = await response.json()
            assert response.status == 405, body
            assert response.headers["Allow"] == "GET, HEAD"
            assert "kubectl" in body["message"]
            assert body["statusCode"] == 405


async def test_health_errors_settings_and_unknown_routes(
        client: tuple[Gateway, TestClient[Any, Any]]) -> None:
    gateway, c = client
    status, body, _ = await call(c, "GET", "/api/health", headers={})
    assert status == 200
    assert body == {"commit": body["commit"], "database": "ok", "version": DEFAULT_GRAFANA_VERSION}
    gateway.synced = False
    status, body, _ = await call(c, "GET", "/api/health", headers={})
    assert (status, body["database"]) == (503, "failing")
    gateway.synced = True
    status, body, _ = await call(c, "GET", "/api/plugins/errors")
    assert (status, body) == (200, [{"pluginId": "bad-app", "errorCode": "signatureModified",
                                     "pluginType": "app"}])
    status, body, _ = await call(c, "GET", "/api/plugins/good-app/settings")
    assert status == 200
    assert body["id"] == "good-app"
    assert body["jsonData"] == {"a": 1}
    assert body["info"]["version"] == "1.0.0"
    status, body, _ = await call(c, "GET", "/api/plugins/bad-app/settings")
    assert status == 404
    for method, path, expected in (("GET", "/api/nothing-here", 404),
                                   ("DELETE", "/api/ds/query", 405)):
        status, body, _ = await call(c, method, path)
        assert (status, body["statusCode"]) == (expected, expected)


K8S = "Bearer k8s-token"
OAUTH = "Bearer oauth-token"
PASS = {"oauthPassThru": True, "keepCookies": ["keep"]}
BASE = {"http_X-Datasource-Uid": "u", "http_X-Grafana-Org-Id": "1"}


@pytest.mark.parametrize(("incoming", "json_data", "expected"), [
    # Grafana's tracing headers, as http_<Header>; the uid and org are always set.
    ({"X-Query-Group-Id": "g", "X-Panel-Id": "4", "X-Panel-Plugin-Id": "timeseries",
      "X-Dashboard-Uid": "d", "X-Dashboard-Title": "Dash", "X-Panel-Title": "P",
      "X-Grafana-From-Expr": "true", "X-Datasource-Uid": "other"}, {},
     {**BASE, "http_X-Query-Group-Id": "g", "http_X-Panel-Id": "4",
      "http_X-Panel-Plugin-Id": "timeseries", "http_X-Dashboard-Uid": "d",
      "http_X-Dashboard-Title": "Dash", "http_X-Panel-Title": "P",
      "http_X-Grafana-From-Expr": "true"}),
    # Alerting: X-Rule-* prefixed, FromAlert and X-Cache-Skip raw; the ID token prefixed.
    ({"X-Rule-Uid": "r", "X-Rule-Name": "n", "X-Rule-Folder": "f", "X-Rule-Source": "s",
      "X-Rule-Type": "t", "X-Rule-Version": "3", "X-Rule-Origin": "o", "FromAlert": "true",
      "X-Cache-Skip": "true", "X-Grafana-Id": "jwt"}, {},
     {**BASE, "http_X-Rule-Uid": "r", "http_X-Rule-Name": "n", "http_X-Rule-Folder": "f",
      "http_X-Rule-Source": "s", "http_X-Rule-Type": "t", "http_X-Rule-Version": "3",
      "http_X-Rule-Origin": "o", "FromAlert": "true", "X-Cache-Skip": "true",
      "http_X-Grafana-Id": "jwt"}),
    # Empty values are not forwarded; unknown headers never are.
    ({"X-Panel-Id": "", "X-Something": "x"}, {}, BASE),
    # The caller's Kubernetes token never reaches a plugin, whatever the settings.
    ({"Authorization": K8S, "Cookie": "keep=1; other=2"}, {}, BASE),
    ({"Authorization": K8S, "X-Id-Token": "id"}, PASS, BASE),
    # Cookies only those keepCookies names.
    ({"Authorization": K8S, "Cookie": "other=2; keep=1"}, PASS, {**BASE, "Cookie": "keep=1"}),
    ({"Cookie": "keep=1"}, {"keepCookies": "keep"}, BASE),
    # OAuth pass-through: the Kubernetes token comes in X-Plugin-Operator-Authorization.
    ({"X-Plugin-Operator-Authorization": K8S, "Authorization": OAUTH, "X-Id-Token": "id"},
     PASS, {**BASE, "Authorization": OAUTH, "X-Id-Token": "id"}),
    ({"X-Plugin-Operator-Authorization": K8S, "Authorization": OAUTH}, {}, BASE),
    ({"X-Plugin-Operator-Authorization": K8S, "Authorization": OAUTH},
     {"oauthPassThru": "yes"}, BASE),
    # Bytes that are not UTF-8 are replaced, as Grafana does.
    ({"X-Panel-Title": "caf\udce9"}, {}, {**BASE, "http_X-Panel-Title": "caf\ufffd"}),
])
def test_forwarded_headers_table(incoming: dict[str, str], json_data: dict[str, Any],
                                 expected: dict[str, str]) -> None:
    assert context.forwarded_headers(incoming, "u", 1, json_data) == expected


def test_query_results_are_encoded_as_grafana_encodes_them() -> None:
    body = encode_results({
        "A": QueryResult(200),
        "B": QueryResult(400, "bad", "downstream", [b'{"schema":{}}']),
        **failed_results(["C"], GatewayError(503, "Plugin unavailable")),
    })
    assert body == (b'{"results":{"A":{"status":200,"frames":[]},'
                    b'"B":{"error":"bad","errorSource":"downstream","status":400,'
                    b'"frames":[{"schema":{}}]},'
                    b'"C":{"error":"Plugin unavailable","errorSource":"plugin",'
                    b'"status":503}}}')
