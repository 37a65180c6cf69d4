"""The gateway in front of both sample plugins (Python SDK and Go SDK) through the host."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from plugin_operator.protocol.frames import frame_from_arrow, frame_from_json
from tests.integration.gateway.conftest import GO_PLUGIN_ID, PYTHON_PLUGIN_ID, Stack

pytestmark = pytest.mark.integration
RANGE = {"from": "1700000000000", "to": "1700003600000"}


async def post_query(stack: Stack, queries: list[dict[str, Any]],
                     headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{stack.url}/api/ds/query", json={**RANGE, "queries": queries},
            headers=headers or {}) as response:
        body = await response.read()
        return response.status, body, response.headers.get("Content-Type", "")


async def get(stack: Stack, path: str) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.get(stack.url + path) as response:
        return response.status, await response.read(), response.headers


async def test_one_request_queries_both_plugins_concurrently(stack: Stack) -> None:
    status, body, content_type = await post_query(stack, [
        {"refId": "A", "datasource": {"uid": "py-uid"}, "scenario": "random_walk",
         "maxDataPoints": 10},
        {"refId": "B", "datasource": {"uid": "go-uid"}, "queryType": "table"},
        {"refId": "C", "datasource": {"uid": "py-uid"}, "scenario": "table"},
    ])
    assert status == 200, body
    assert content_type.startswith("application/json")
    results = json.loads(body)["results"]
    assert list(results) == ["A", "B", "C"]
    walk = frame_from_json(json.dumps(results["A"]["frames"][0]))
    assert walk.rows == 10
    assert walk.ref_id == "A"
    go_table = frame_from_json(json.dumps(results["B"]["frames"][0]))
    assert [f.name for f in go_table.fields][:2] == ["name", "count"]
    py_table = results["C"]["frames"][0]
    # Special floats travel as entities, exactly as Grafana writes them.
    assert py_table["data"]["entities"][3] == {"NaN": [0], "Inf": [1], "NegInf": [2]}
    assert all(r["status"] == 200 for r in results.values())


async def test_a_failed_query_makes_the_answer_400_with_its_error_source(stack: Stack) -> None:
    status, body, _ = await post_query(stack, [
        {"refId": "A", "datasource": {"uid": "py-uid"}, "scenario": "error"},
        {"refId": "B", "datasource": {"uid": "go-uid"}, "queryType": "fail"},
        {"refId": "C", "datasource": {"uid": "go-uid"}, "queryType": "table"},
    ])
    assert status == 400
    results = json.loads(body)["results"]
    assert results["A"]["status"] == 502
    assert results["A"]["errorSource"] == "downstream"
    assert "502" in results["A"]["error"]
    assert results["B"]["errorSource"] == "downstream"
    assert results["C"]["status"] == 200


async def test_unknown_datasource_and_bad_body(stack: Stack) -> None:
    status, body, _ = await post_query(stack, [{"refId": "A", "datasource": {"uid": "nope"}}])
    assert status == 404
    assert "no DataSourceInstance" in json.loads(body)["message"]
    async with aiohttp.ClientSession() as session, session.post(
            f"{stack.url}/api/ds/query", data=b"{") as response:
        assert response.status == 400
        assert "not JSON" in (await response.json())["message"]


async def test_arrow_clients_get_the_plugins_arrow_bytes(stack: Stack) -> None:
    status, body, content_type = await post_query(
        stack, [{"refId": "A", "datasource": {"uid": "go-uid"}, "queryType": "table"},
                {"refId": "B", "datasource": {"uid": "py-uid"}, "scenario": "random_walk",
                 "seriesCount": 2}],
        headers={"Accept": "application/vnd.apache.arrow.file"})
    assert status == 200
    assert content_type.startswith("multipart/mixed")
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    parts = [p for p in body.split(b"--" + boundary) if p.strip(b"-\r\n")]
    frames = []
    for part in parts:
        head, _, payload = part.partition(b"\r\n\r\n")
        assert b"application/vnd.apache.arrow.file" in head
        payload = payload.removesuffix(b"\r\n")
        assert payload.startswith(b"ARROW1")
        frames.append((head, frame_from_arrow(payload)))
    assert len(frames) == 3
    assert {f.name for _, f in frames} == {"table", "series-0", "series-1"}


async def test_health_follows_grafanas_status_rule(stack: Stack) -> None:
    status, body, _ = await get(stack, "/api/datasources/uid/py-uid/health")
    assert status == 200
    assert json.loads(body)["details"] == {"endpoint": "http://example.invalid", "keyLength": 6}
    status, body, _ = await get(stack, "/api/datasources/uid/py-nokey-uid/health")
    assert status == 400
    assert json.loads(body) == {"status": "ERROR", "message": "jsonData.endpoint is not set"}
    status, body, _ = await get(stack, "/api/datasources/uid/go-uid/health")
    assert status == 200
    assert json.loads(body)["details"]["settingsMs"] == 1


async def test_resources_stream_chunk_by_chunk(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            f"{stack.url}/api/datasources/uid/go-uid/resources/stream?chunks=4") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) async for line in response.content if line.strip()]
    assert lines == [{"chunk": i, "of": 4} for i in range(4)]
    status, body, headers = await get(stack, "/api/datasources/uid/py-uid/resources/stream")
    assert status == 200
    assert body == b"chunk-0\nchunk-1\nchunk-2\nchunk-3\n"
    assert "Set-Cookie" not in headers


async def test_resource_requests_carry_method_url_and_body(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{stack.url}/api/datasources/uid/py-uid/resources/echo?x=1&y=2",
            data=b"hi") as response:
        assert response.status == 200
        echoed = await response.json()
    assert echoed == {"method": "POST", "url": "echo?x=1&y=2", "body": "hi"}
    status, _, _ = await get(stack, "/api/datasources/uid/py-uid/resources/missing")
    assert status == 404


async def test_plugin_metrics_and_the_gateways_own(stack: Stack) -> None:
    await post_query(stack, [{"refId": "A", "datasource": {"uid": "go-uid"},
                              "queryType": "table"}])
    status, body, _ = await get(stack, f"/metrics/plugins/{GO_PLUGIN_ID}")
    assert status == 200
    assert b"sample_go_queries_total" in body
    status, body, _ = await get(stack, f"/metrics/plugins/{PYTHON_PLUGIN_ID}")
    assert status == 200
    status, body, _ = await get(stack, "/metrics")
    text = body.decode()
    assert 'plugin_gateway_requests_total{datasource_uid="go-uid",plugin="' \
           f'{GO_PLUGIN_ID}",route="/api/ds/query",status="200"}}' in text
    assert "plugin_gateway_upstream_duration_seconds_bucket" in text
    assert "plugin_gateway_request_duration_seconds_bucket" in text


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    name, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line:
            events.append((name, data))
            name, data = "", ""
            if len(events) >= count:
                break
    return events


async def test_streams_over_server_sent_events(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.url}/api/streams/ds/py-uid/counter",
                               params={"data": json.dumps({"count": 3,
                                                           "interval": 0.01})}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            events = await read_events(response, 10)
        assert events[0][0] == "subscribed"
        values = [json.loads(d)["data"]["values"][0][0] for n, d in events if not n]
        assert values == [0, 1, 2]
        assert events[-1][0] == "end"
        async with session.get(f"{stack.url}/api/streams/ds/go-uid/ticks",
                               params={"data": json.dumps({"intervalMs": 20})}) as response:
            assert response.status == 200
            events = await read_events(response, 3)
        assert events[0][0] == "subscribed"
        assert "schema" in json.loads(events[0][1])
        async with session.get(f"{stack.url}/api/streams/ds/go-uid/nope") as response:
            assert response.status == 404
        async with session.post(f"{stack.url}/api/streams/ds/go-uid/ticks",
                                data=b"{}") as response:
            assert response.status == 403


async def test_plugin_scoped_streams(stack: Stack) -> None:
    url = f"{stack.url}/api/streams/plugin/{PYTHON_PLUGIN_ID}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/counter", params={"data": json.dumps(
                {"count": 2, "interval": 0.01})}) as response:
            assert response.status == 200, await response.text()
            events = await read_events(response, 10)
        assert events[0][0] == "subscribed"
        assert [json.loads(d)["data"]["values"][0][0] for n, d in events if not n] == [0, 1]
        async with session.get(f"{url}/nope") as response:
            assert response.status == 404
        # The Python sample refuses publishes: the plugin's answer, not a gateway error.
        async with session.post(f"{url}/counter", data=b"{}") as response:
            assert response.status == 403
            assert (await response.json())["messageId"] == "stream.permissionDenied"
        async with session.post(f"{stack.url}/api/live/publish", json={
                "channel": f"plugin/{PYTHON_PLUGIN_ID}/counter", "data": {}}) as response:
            assert response.status == 403


async def test_plugins_list_and_openapi(stack: Stack) -> None:
    status, body, _ = await get(stack, "/api/plugins")
    assert status == 200
    listed = {p["id"]: p for p in json.loads(body)}
    assert set(listed) == {GO_PLUGIN_ID, PYTHON_PLUGIN_ID}
    assert listed[GO_PLUGIN_ID]["module"] == f"public/plugins/{GO_PLUGIN_ID}/module.js"
    assert listed[GO_PLUGIN_ID]["ready"] is True
    status, body, _ = await get(stack, "/api/openapi.json")
    document = json.loads(body)
    assert status == 200
    assert "/api/ds/query" in document["paths"]
    assert document["openapi"].startswith("3.")
