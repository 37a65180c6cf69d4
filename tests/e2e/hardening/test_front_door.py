"""Issue 12, items 1 and 4-7, on the cluster: what a caller can do to the gateway.

A caller without a token, with a garbage token, or with bad input gets a 4xx that says what
is wrong, costs the gateway a bounded amount of memory, and never restarts it.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

from tests.e2e.hardening.attacks import FLOOD
from tests.e2e.hardening.conftest import (
    GATEWAY_MEMORY_LIMIT,
    GOOD_UID,
    Hardening,
    dumps,
    query_body,
)
from tests.e2e.operator.conftest import TESTDATA_ID

MiB = 1 << 20


def flood(hardening: Hardening, groups: list[dict[str, Any]], concurrency: int = 16
          ) -> dict[str, Any]:
    spec = {"base": hardening.client.base_url, "concurrency": concurrency, "groups": groups}
    return hardening.finish(hardening.start(FLOOD, spec))


def only(report: dict[str, Any], name: str, status: str) -> None:
    statuses = report[name]["statuses"]
    assert set(statuses) == {status}, f"{name}: {report[name]}"


def test_huge_bodies_with_and_without_a_token_cost_the_gateway_little(
        hardening: Hardening) -> None:
    """Item 1: eight unauthenticated 60 MB publishes OOM-killed a 512 MiB gateway. Now a
    body is not read before its caller is authenticated, and an authenticated caller's body
    stops at the route's limit (413)."""
    before = hardening.gateway_restarts()
    token = hardening.client.allowed_token
    big = 60 * MiB
    report = flood(hardening, [
        {"name": "publish, no token", "method": "POST", "path": "/api/live/publish",
         "stream_bytes": big, "content_length": True, "count": 8},
        {"name": "query, no token, chunked", "method": "POST", "path": "/api/ds/query",
         "stream_bytes": big, "count": 8},
        {"name": "query, 20 MB", "method": "POST", "path": "/api/ds/query", "token": token,
         "stream_bytes": 20 * MiB, "content_length": True, "count": 4},
        {"name": "query, 20 MB chunked", "method": "POST", "path": "/api/ds/query",
         "token": token, "stream_bytes": 20 * MiB, "count": 4},
        {"name": "publish, 60 MB", "method": "POST", "path": "/api/live/publish",
         "token": token, "stream_bytes": big, "content_length": True, "count": 4},
    ])
    only(report, "publish, no token", "401")
    only(report, "query, no token, chunked", "401")
    for name in ("query, 20 MB", "query, 20 MB chunked", "publish, 60 MB"):
        only(report, name, "413")
        message = json.loads(report[name]["messages"][0])["message"]
        assert "too large" in message, message
        assert "at most" in message, message
    assert hardening.gateway_restarts() == before, "the gateway restarted"
    peak = hardening.gateway_memory_peak()
    assert peak < GATEWAY_MEMORY_LIMIT // 2, f"gateway memory peaked at {peak / MiB:.0f} MiB"
    good = hardening.client.call("POST", "/api/ds/query", token=token,
                                 body=query_body(GOOD_UID))
    assert good["status"] == 200, good


def test_plugin_scoped_streams_answer(hardening: Hardening) -> None:
    """Item 4: GET and POST /api/streams/plugin/{id}/{path} answered 500 (KeyError)."""
    client = hardening.client
    data = urllib.parse.urlencode({"data": json.dumps({"count": 2, "interval": 0.05})})
    streamed = client.call("GET", f"/api/streams/plugin/{TESTDATA_ID}/counter?{data}",
                           token=client.allowed_token, sse_events=2)
    assert streamed["status"] == 200, streamed
    frames = [json.loads(e["data"]) for e in streamed["events"] if "event" not in e]
    assert [f["data"]["values"][0] for f in frames] == [[0], [1]], streamed
    published = client.call("POST", f"/api/streams/plugin/{TESTDATA_ID}/counter",
                            token=client.allowed_token, body={"data": {"value": 1}})
    assert published["status"] < 500, published
    assert json.loads(published["body"]).get("message"), published


def test_unknown_names_do_not_grow_the_gateways_metrics(hardening: Hardening) -> None:
    """Item 5: every unknown plugin id and uid became a label value, kept until restart
    (20,000 requests: 13.5 MB of metrics)."""
    before = len(hardening.gateway_metrics())
    names = [uuid.uuid4().hex for _ in range(1500)]
    report = flood(hardening, [
        {"name": f"unknown {i}", "method": "GET", "count": 1,
         "path": f"/public/plugins/{name}/module.js" if i % 2 else
         f"/api/datasources/uid/{name}/health"} for i, name in enumerate(names)],
        concurrency=32)
    statuses = {s for entry in report.values() for s in entry["statuses"]}
    assert statuses <= {"401", "404"}, statuses
    metrics = hardening.gateway_metrics()
    assert not any(name in metrics for name in names), "an unknown name became a label"
    assert len(metrics) - before < 20_000, (before, len(metrics))


def test_a_rejected_token_costs_the_apiserver_one_review(hardening: Hardening) -> None:
    """Item 6: 300 requests with one garbage token made 300 TokenReviews."""
    garbage = "eyJhbGciOiJSUzI1NiJ9." + uuid.uuid4().hex + ".c2lnbmF0dXJl"
    before = hardening.token_reviews()
    report = flood(hardening, [
        {"name": "garbage", "method": "GET", "path": f"/api/datasources/uid/{GOOD_UID}/health",
         "token": garbage, "count": 300}], concurrency=8)
    only(report, "garbage", "401")
    reviews = hardening.token_reviews() - before
    # One per gateway replica, a few more for other callers of the apiserver meanwhile.
    assert reviews <= 5, f"{reviews} TokenReviews for one rejected token"


BAD_QUERIES: dict[str, str] = {
    "from null": dumps({**query_body(GOOD_UID), "from": None}),
    "from {}": dumps({**query_body(GOOD_UID), "from": {}}),
    "from NaN": dumps({**query_body(GOOD_UID), "from": "NAN_HERE"}).replace(
        '"NAN_HERE"', "NaN"),
    "to 1e30": dumps({**query_body(GOOD_UID), "to": 1e30}),
    "huge relative range": dumps({**query_body(GOOD_UID), "from": "now-99999999999y"}),
    "maxDataPoints 1e30": dumps(query_body(GOOD_UID, maxDataPoints=1e30)),
    "maxDataPoints NaN": dumps(query_body(GOOD_UID)).replace('"maxDataPoints":10',
                                                              '"maxDataPoints":NaN'),
    "lone surrogate refId": dumps(query_body(GOOD_UID)).replace('"refId":"A"',
                                                                 '"refId":"\\ud800"'),
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "10,000 queries": dumps({"from": "now-1h", "to": "now", "queries": [
        {"refId": f"Q{i}", "datasource": {"uid": GOOD_UID}} for i in range(10_000)]}),
    "not JSON": "{",
    "queries not a list": dumps({"from": "now-1h", "to": "now", "queries": {}}),
}


def test_bad_input_gets_a_4xx_that_says_what_to_fix(hardening: Hardening) -> None:
    """Item 7: these answered 500."""
    token = hardening.client.allowed_token
    report = flood(hardening, [
        {"name": name, "method": "POST", "path": "/api/ds/query", "token": token,
         "body": body, "count": 1} for name, body in BAD_QUERIES.items()])
    for name in BAD_QUERIES:
        (status,) = report[name]["statuses"]
        assert status == "400", f"{name}: {report[name]}"
        message = json.loads(report[name]["messages"][0])["message"]
        assert len(message) > 20, f"{name}: {message!r} does not say what to fix"
