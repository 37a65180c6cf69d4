"""The gateway's front door, in process (no backends): who is asked for a token before a
body is read, body and query limits, 4xx (never 5xx) for bad input, bounded metric labels
and plugin-scoped streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from plugin_operator.gateway.access import Gatekeeper, Permission
from plugin_operator.gateway.limits import Limits
from plugin_operator.gateway.routing import Kind, RoutingTable
from plugin_operator.gateway.server import Gateway, GatewayConfig
from plugin_operator.kube.reviews import Identity
from tests.support.gateway_launcher import datasource_object, plugin_object
from tests.support.wait import eventually_async

GOOD = {"Authorization": "Bearer good"}
# Small limits keep the bodies of these tests small.
LIMITS = Limits(query_body_bytes=64 * 1024, resource_body_bytes=128 * 1024,
                publish_body_bytes=4096, queries_per_request=10, json_containers=500)


async def review_token(token: str) -> Identity | None:
    return Identity("alice") if token == "good" else None


async def review_access(identity: Identity, permission: Permission) -> bool:
    return permission.name in ("ds", "td")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, TestClient[Any, Any]]]:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Pod"))
    table.apply(Kind.PLUGIN, plugin_object("other", "other-app", mode="Pod"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-1", "td"))
    table.apply(Kind.DATASOURCE, datasource_object("secret-ds", "uid-2", "td"))
    gateway = Gateway(table, Gatekeeper(review_token, review_access),
                      GatewayConfig(asset_cache_dir=tmp_path, limits=LIMITS))
    gateway.synced = True
    client = TestClient(TestServer(gateway.app()))
    await client.start_server()
    try:
        yield gateway, client
    finally:
        await client.close()
        await gateway.upstream.close()


async def exchange(client: TestClient[Any, Any], head: str, body: Sequence[bytes] = ()
                   ) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP/1.1 exchange: ``head`` (request line and headers) and only the body
    parts given, however much ``Content-Length`` promises. Answers that need the rest of
    the body never come, and the test fails on the timeout."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n")
        for part in body:
            writer.write(part)
        await writer.drain()
        async with asyncio.timeout(5):
            status = int((await reader.readline()).split()[1])
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()):
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
            payload = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, payload
    finally:
        writer.close()


def post(path: str, extra: str = "", length: int = 60_000_000) -> str:
    return (f"POST {path} HTTP/1.1\nHost: gateway\nContent-Type: application/json\n"
            f"Content-Length: {length}\n{extra}")


@pytest.mark.parametrize("path", ["/api/ds/query", "/api/live/publish",
                                  "/api/streams/ds/uid-1/counter",
                                  "/api/datasources/uid/uid-1/resources/upload",
                                  "/api/plugins/testdata/resources/upload"])
async def test_no_token_is_refused_before_the_body_is_read(
        gateway: tuple[Gateway, TestClient[Any, Any]], path: str) -> None:
    # 60 MB promised, none sent: the 401 must come without waiting for it.
    status, _, body = await exchange(gateway[1], post(path))
    assert status == 401
    assert "bearer token" in json.loads(body)["message"]


async def test_a_forbidden_caller_is_refused_before_the_body_is_read(
        gateway: tuple[Gateway, TestClient[Any, Any]]) -> None:
    head = post("/api/datasources/uid/uid-2/resources/upload", "Authorization: Bearer good\n",
                length=1000)
    status, _, body = await exchange(gateway[1], head)
    assert status == 403
    assert "secret-ds" in json.loads(body)["message"]


@pytest.mark.parametrize(("path", "limit"), [
    ("/api/ds/query", LIMITS.query_body_bytes),
    ("/api/live/publish", LIMITS.publish_body_bytes),
    ("/api/datasources/uid/uid-1/resources/upload", LIMITS.resource_body_bytes)])
async def test_a_declared_length_over_the_route_limit_is_413_before_reading(
        gateway: tuple[Gateway, TestClient[Any, Any]], path: str, limit: int) -> None:
    status, headers, body = await exchange(gateway[1], post(path, "Authorization: Bearer good\n",
                                                            length=limit + 1))
    assert status == 413
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert error["statusCode"] == 413
    assert f"at most {limit} bytes" in error["message"]
    # With Expect: 100-continue the client is told before it sends anything.
    status, _, _ = await exchange(gateway[1], post(
        path, "Authorization: Bearer good\nExpect: 100-continue\n", length=limit + 1))
    assert status == 413


async def test_a_chunked_body_is_cut_off_at_the_limit(
        gateway: tuple[Gateway, TestClient[Any, Any]]) -> None:
    head = ("POST /api/ds/query HTTP/1.1\nHost: gateway\nAuthorization: Bearer good\n"
            "Transfer-Encoding: chunked\n")
    chunk = b"x" * 16_000
    # Five chunks pass the 64 KiB limit; the sixth is never sent, nor the final chunk.
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 5
    status, _, body = await exchange(gateway[1], head, parts)
    assert status == 413
    assert "Request body too large" in json.loads(body)["message"]


NESTED = "[" * 20_000 + "]" * 20_000


def query_body(**fields: Any) -> str:
    return json.dumps({"queries": [{"refId": "A", "datasource": {"uid": "uid-1"}}], **fields})


def one_query(**fields: Any) -> str:
    return json.dumps({"queries": [{"refId": "A", "datasource": {"uid": "uid-1"}, **fields}]})


# (body, status, words the message must hold): every bad input is a 4xx saying what to fix.
BAD_QUERIES: list[tuple[str | bytes, int, str]] = [
    (query_body(**{"from": None}), 400, "from must be a string"),
    (query_body(**{"from": {}}), 400, "from must be a string"),
    (query_body(to=[]), 400, "to must be a string"),
    ('{"from": NaN, "queries": [{"datasource": "uid-1"}]}', 400, "out of range"),
    ('{"to": Infinity, "queries": [{"datasource": "uid-1"}]}', 400, "out of range"),
    (query_body(**{"from": 1e30}), 400, "out of range"),
    (query_body(**{"from": -1}), 400, "out of range"),
    (query_body(**{"from": "now-99999999999999y"}), 400, "out of range"),
    (query_body(**{"from": "now-" + "9" * 5000 + "y"}), 400, "not a time"),
    (query_body(**{"from": "9" * 5000}), 400, "not a time"),
    (query_body(**{"from": "\u00b2"}), 400, "not a time"),
    (query_body(**{"from": "now", "to": "now-1h"}), 400, "swap them"),
    (one_query(maxDataPoints=1e30), 400, "maxDataPoints=1e+30 is out of range"),
    ('{"queries": [{"datasource": "uid-1", "maxDataPoints": NaN}]}', 400, "maxDataPoints"),
    (one_query(maxDataPoints=-5), 400, "maxDataPoints=-5 is out of range"),
    (one_query(intervalMs=1e300), 400, "intervalMs"),
    (one_query(maxDataPoints="9"), 400, "maxDataPoints must be a number"),
    ('{"queries": [{"refId": "\\ud800", "datasource": "uid-1"}]}', 400, "refId is not valid"),
    ('{"queries": [{"queryType": "\\udfff", "datasource": "uid-1"}]}', 400, "queryType"),
    ('{"queries": [{"datasource": {"uid": "\\ud800"}}]}', 400, "datasource.uid is not valid"),
    (one_query(queryType=5), 400, "queryType must be a string"),
    (NESTED, 400, "JSON objects and arrays"),
    (json.dumps({"queries": [{"datasource": "uid-1", "refId": str(i)} for i in range(11)]}),
     400, "at most 10 are accepted"),
    ("{", 400, "not JSON"),
    (b'{"queries": "\xff"}', 400, "not JSON"),
    ("[]", 400, "JSON object"),
    ('{"queries": []}', 400, "non-empty"),
    (json.dumps({"queries": [{"datasource": "__expr__"}]}), 400, "built into Grafana"),
    (json.dumps({"queries": [{"datasource": "uid-1", "x": "y" * 70_000}]}), 413,
     "--max-query-body-bytes"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD_QUERIES)
async def test_bad_queries_get_a_4xx_that_says_what_to_fix(
        gateway: tuple[Gateway, TestClient[Any, Any]], body: str | bytes, status: int,
        words: str) -> None:
    answer = await gateway[1].post("/api/ds/query", headers=GOOD,
                                   data=body if isinstance(body, bytes) else body.encode())
    error = await answer.json()
    assert answer.status == status, error
    assert words in error["message"]


async def test_bad_text_in_forwarded_headers_is_replaced_as_grafana_does(
        gateway: tuple[Gateway, TestClient[Any, Any]]) -> None:
    head = ("POST /api/ds/query HTTP/1.1\nHost: gateway\nAuthorization: Bearer good\n"
            "X-Dashboard-Uid: \xff\xfe\nContent-Length: {}\n")
    body = one_query().encode()
    status, _, answer = await exchange(gateway[1], head.format(len(body)), [body])
    # Not refused: the query goes on to its plugin (none is running here: 503).
    assert status == 503, answer
    assert json.loads(answer)["messageId"] == "plugin.unavailable"


async def test_labels_hold_only_known_plugins_and_datasources(
        gateway: tuple[Gateway, TestClient[Any, Any]]) -> None:
    server, client = gateway
    for index in range(30):
        assert (await client.get(f"/public/plugins/nope-{index}/module.js")).status == 404
        answer = await client.get(f"/api/datasources/uid/nope-{index}/health", headers=GOOD)
        assert answer.status == 404
        answer = await client.get(f"/api/plugins/nope-{index}/health", headers=GOOD)
        assert answer.status == 404
        answer = await client.post("/api/ds/query", headers=GOOD, data=json.dumps(
            {"queries": [{"datasource": f"nope-{index}"}]}))
        assert answer.status == 404
    values: dict[str, set[str]] = {"plugin": set(), "datasource_uid": set()}
    for metric in server.metrics.registry.collect():
        for sample in metric.samples:
            for label, seen in values.items():
                if label in sample.labels:
                    seen.add(sample.labels[label])
    assert values["plugin"] <= {"", "unknown", "testdata", "other-app", "mixed"}, values
    assert values["datasource_uid"] <= {"", "unknown", "uid-1", "uid-2", "mixed"}, values
    assert "unknown" in values["plugin"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/streams/plugin/testdata/counter", None),
    ("POST", "/api/streams/plugin/testdata/counter", b"{}"),
    ("POST", "/api/live/publish", b'{"channel": "plugin/testdata/counter", "data": {}}')])
async def test_plugin_scoped_streams_reach_routing(
        gateway: tuple[Gateway, TestClient[Any, Any]], method: str, path: str,
        body: bytes | None) -> None:
    # No backend runs here: the answer is "unavailable", where it used to be a 500.
    answer = await gateway[1].request(method, path, data=body, headers=GOOD)
    assert answer.status == 503
    assert (await answer.json())["messageId"] == "plugin.unavailable"
    forbidden = await gateway[1].request(method, path.replace("testdata", "other-app"),
                                         data=(body or b"").replace(b"testdata", b"other-app"),
                                         headers=GOOD)
    assert forbidden.status == 403


async def eventually(check: Callable[[], bool]) -> None:
    await eventually_async("the condition", check, timeout_s=5, interval_s=0.01)


async def test_bodies_held_at_once_are_bounded(tmp_path: Path) -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Pod"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-1", "td"))
    gateway = Gateway(table, Gatekeeper(review_token, review_access), GatewayConfig(
        asset_cache_dir=tmp_path, limits=Limits(bodies_in_flight_bytes=1000)))
    async with TestClient(TestServer(gateway.app())) as client:
        # 900 bytes promised and held while the body trickles in: a second body must wait.
        head = post("/api/datasources/uid/uid-1/resources/x", "Authorization: Bearer good\n",
                    length=900)
        assert client.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + b"x" * 100)
        await writer.drain()
        await eventually(lambda: gateway.bodies.held == 900)
        answer = await client.post("/api/datasources/uid/uid-1/resources/x", data=b"y" * 200,
                                   headers=GOOD)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "1"
        writer.close()
        await eventually(lambda: gateway.bodies.held == 0)  # given back when it ends
    await gateway.upstream.close()


async def test_a_20_mb_query_is_413_with_the_default_limits(tmp_path: Path) -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Pod"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-1", "td"))
    gateway = Gateway(table, Gatekeeper(review_token, review_access),
                      GatewayConfig(asset_cache_dir=tmp_path))
    body = json.dumps({"queries": [{"datasource": "uid-1", "x": "y" * 20_000_000}]}).encode()
    async with TestClient(TestServer(gateway.app())) as client:
        answer = await client.post("/api/ds/query", data=body, headers=GOOD)
        assert answer.status == 413  # it used to be read whole, then refused by the plugin (503)
        assert "at most 4194304 bytes" in (await answer.json())["message"]
    await gateway.upstream.close()
