"""The chart's gateway on the real cluster: queries, RBAC, resources, streams, health, and a
backend killed under steady load, all through the gateway Service from a pod in the cluster."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from tests.e2e.gateway.client import LOAD
from tests.e2e.gateway.conftest import GO_UID, PYTHON_UID, GatewayClient
from tests.e2e.kube import KILL_PLUGIN

RANGE = {"from": "now-1h", "to": "now"}
GO_QUERY = {"refId": "G", "datasource": {"uid": GO_UID}, "queryType": "randomWalk",
            "maxDataPoints": 10}
PYTHON_QUERY = {"refId": "P", "datasource": {"uid": PYTHON_UID}, "scenario": "random_walk",
                "maxDataPoints": 10}


def _grafana_error(answer: dict[str, Any], status: int) -> dict[str, Any]:
    assert answer["status"] == status, answer
    assert answer["headers"]["Content-Type"].startswith("application/json"), answer
    payload: dict[str, Any] = json.loads(answer["body"])
    assert payload["statusCode"] == status
    assert isinstance(payload["message"], str), payload
    assert payload["message"], payload
    return payload


def test_allowed_token_queries_both_samples_in_grafanas_shape(gateway: GatewayClient) -> None:
    answer = gateway.call("POST", "/api/ds/query", token=gateway.allowed_token,
                          body={**RANGE, "queries": [GO_QUERY, PYTHON_QUERY]})
    assert answer["status"] == 200, answer
    results = json.loads(answer["body"])["results"]
    assert sorted(results) == ["G", "P"]
    for ref_id, result in results.items():
        assert result["status"] == 200, result
        (frame,) = result["frames"][:1]
        assert frame["schema"]["refId"] == ref_id
        values = frame["data"]["values"]
        assert len(values) >= 2, f"{ref_id}: {frame}"
        assert len(values[0]) == 10, f"{ref_id}: {frame}"


def test_denied_token_gets_403_and_no_token_401(gateway: GatewayClient) -> None:
    body = {**RANGE, "queries": [GO_QUERY]}
    forbidden = _grafana_error(
        gateway.call("POST", "/api/ds/query", token=gateway.denied_token, body=body), 403)
    assert "go-ds" in forbidden["message"], forbidden
    _grafana_error(gateway.call("GET", f"/api/datasources/uid/{PYTHON_UID}/health",
                                token=gateway.denied_token), 403)
    missing = gateway.call("POST", "/api/ds/query", body=body)
    _grafana_error(missing, 401)
    assert missing["headers"]["WWW-Authenticate"].startswith("Bearer")
    _grafana_error(gateway.call("POST", "/api/ds/query", token="not-a-real-token", body=body),
                   401)


def test_health_of_both_datasources(gateway: GatewayClient) -> None:
    for uid, message in ((GO_UID, "API key accepted"),
                         (PYTHON_UID, "connected to https://metrics.example.invalid")):
        answer = gateway.call("GET", f"/api/datasources/uid/{uid}/health",
                              token=gateway.allowed_token)
        assert answer["status"] == 200, answer
        health = json.loads(answer["body"])
        assert health["status"] == "OK", health
        assert health["message"] == message, health
        assert health["details"], health
    for path in ("/healthz", "/readyz"):
        assert gateway.call("GET", path)["status"] == 200


def test_resource_call_streams_several_chunks(gateway: GatewayClient) -> None:
    go = gateway.call("GET", f"/api/datasources/uid/{GO_UID}/resources/stream?chunks=6",
                      token=gateway.allowed_token)
    assert go["status"] == 200, go
    assert go["headers"]["Content-Type"] == "application/x-ndjson"
    # Written as the plugin's messages arrive, so the length is not known up front.
    assert go["headers"].get("Transfer-Encoding") == "chunked", go["headers"]
    lines = [json.loads(line) for line in go["body"].splitlines()]
    assert lines == [{"chunk": i, "of": 6} for i in range(6)]

    python = gateway.call("GET", f"/api/datasources/uid/{PYTHON_UID}/resources/stream",
                          token=gateway.allowed_token)
    assert python["status"] == 200, python
    assert python["headers"].get("Transfer-Encoding") == "chunked", python["headers"]
    assert python["body"] == "".join(f"chunk-{i}\n" for i in range(4))


def _sse(gateway: GatewayClient, uid: str, path: str, data: dict[str, Any],
         events: int) -> list[dict[str, str]]:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    answer = gateway.call("GET", f"/api/streams/ds/{uid}/{path}?{query}",
                          token=gateway.allowed_token, sse_events=events, timeout_s=30)
    assert answer["status"] == 200, answer
    assert answer["headers"]["Content-Type"].startswith("text/event-stream")
    received: list[dict[str, str]] = answer["events"]
    assert received, answer
    assert received[0].get("event") == "subscribed", received
    return received


def test_stream_over_sse(gateway: GatewayClient) -> None:
    # The Python sample ends its stream after ``count`` frames; the gateway then says "end".
    python = _sse(gateway, PYTHON_UID, "counter", {"count": 3, "interval": 0.05}, 10)
    frames = [json.loads(e["data"]) for e in python if "event" not in e]
    assert [f["data"]["values"][0] for f in frames] == [[0], [1], [2]], python
    assert python[-1].get("event") == "end", python
    # The Go sample ticks until the client goes away: take four, then hang up.
    go = _sse(gateway, GO_UID, "ticks", {"intervalMs": 50}, 4)
    ticks = [json.loads(e["data"]) for e in go if "event" not in e]
    assert len(ticks) == 4, go
    forbidden = gateway.call("GET", f"/api/streams/ds/{GO_UID}/ticks",
                             token=gateway.denied_token)
    _grafana_error(forbidden, 403)


def test_backend_killed_under_steady_load_loses_only_what_it_was_serving(
        gateway: GatewayClient) -> None:
    """A query a dying backend was serving is answered 502 and not replayed on the other
    replica (it may be what killed it); every other query is answered."""
    plugins = gateway.plugins
    pods = plugins.pods("go")
    assert len(pods) == 2, "the Go sample runs two replicas"
    rate, seconds = 20, 20
    load = gateway.script(LOAD, f"{gateway.base_url}/api/ds/query", gateway.allowed_token,
                          str(rate), str(seconds), json.dumps({**RANGE, "queries": [GO_QUERY]}),
                          timeout_s=seconds + 60)
    try:
        time.sleep(6)  # steady load first
        victim = pods[0]["metadata"]["name"]
        killed = plugins.cluster.python(plugins.namespace, victim, KILL_PLUGIN,
                                        "gpx_sample_go").stdout.split()
        assert killed, f"no plugin process found in {victim}"
        stdout, stderr = load.communicate(timeout=seconds + 90)
    finally:
        if load.poll() is None:
            load.kill()
    assert load.returncode == 0, f"load script failed:\n{stderr}\n{gateway.gateway_logs()}"
    report = json.loads(stdout)
    statuses = report["statuses"]
    lost = rate * seconds - statuses.get("200", 0)
    # At 20 queries a second of about a millisecond each, at most one is in flight at the kill.
    assert lost <= 1, f"queries lost while a backend was killed: {report}\n" \
                      f"{gateway.gateway_logs()}"
    assert set(statuses) <= {"200", "502"}, report
    assert report["frames_missing"] == 0, report
    # The kill really happened: the victim's backend restarted (its host restarted it).
    restarted = plugins.wait_for("the killed backend's restart recorded", lambda: plugins.restarts(
        "go").get(victim, 0) >= 1, timeout_s=60)
    assert restarted
