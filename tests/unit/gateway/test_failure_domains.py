"""Failure domains: which failed calls go to another replica, queries of death in
quarantine, and the limits on what one call may return."""

from __future__ import annotations

import json

import grpc
import pytest

from plugin_operator.gateway.balancer import LoadTracker
from plugin_operator.gateway.errors import GatewayError
from plugin_operator.gateway.failures import lost_while_serving, never_reached_plugin
from plugin_operator.gateway.limits import Limits, check_result_size
from plugin_operator.gateway.metrics import GatewayMetrics
from plugin_operator.gateway.quarantine import Quarantine, fingerprint
from plugin_operator.gateway.upstream import Upstream
from plugin_operator.protocol.errors import PluginError, PluginUnavailableError
from plugin_operator.protocol.frames import Field, FieldType, Frame, frame_to_arrow
from plugin_operator.protocol.models import FrameFormat

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

# Messages as gRPC's C core (the gateway) and grpc-go (plugin-front, relayed) word them.
NEVER_REACHED = [
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.7:10000: "
    "Failed to connect to remote host: Connection refused",
    "connection error: desc = \"transport: Error while dialing: dial unix "
    "/tmp/plugin123: connect: connection refused\"",
    "connection error: desc = \"transport: Error while dialing: dial unix /tmp/p: connect: "
    "no such file or directory\"",
    "DNS resolution failed for gateway-backend:10000",
]
LOST = [
    "Socket closed",
    "Stream removed (sendmsg: Connection reset by peer (104))",
    "recvmsg:Connection reset by peer",
    "error reading from server: EOF",
    "transport is closing",
]


@pytest.mark.parametrize("message", NEVER_REACHED)
def test_calls_that_never_reached_a_plugin_may_be_retried(message: str) -> None:
    error = PluginUnavailableError(message, code=UNAVAILABLE)
    assert never_reached_plugin(error)
    assert not lost_while_serving(error)


@pytest.mark.parametrize("message", LOST)
def test_calls_lost_with_their_backend_are_not_retried(message: str) -> None:
    error = PluginUnavailableError(message, code=UNAVAILABLE)
    assert not never_reached_plugin(error)
    assert lost_while_serving(error)


def test_other_failures_are_neither() -> None:
    for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
                 grpc.StatusCode.RESOURCE_EXHAUSTED):
        error = PluginError("failed to connect", code=code)
        assert not never_reached_plugin(error)
        assert not lost_while_serving(error)


async def attempts(failure: str) -> tuple[list[str], BaseException | None]:
    """Which endpoints ``Upstream.call`` tries when the first attempt fails with
    ``failure`` (UNAVAILABLE) and the second would succeed."""
    upstream = Upstream(LoadTracker(10), GatewayMetrics(), 1.0)
    tried: list[str] = []

    async def call(endpoint: object) -> str:
        tried.append(endpoint.client.target)  # type: ignore[attr-defined]
        if len(tried) == 1:
            raise PluginUnavailableError(failure, code=UNAVAILABLE)
        return "ok"

    outcome: BaseException | None = None
    try:
        await upstream.call("p", "QueryData", ["10.0.0.1:1", "10.0.0.2:1"], call)
    except PluginError as exc:
        outcome = exc
    await upstream.close()
    return tried, outcome


async def test_upstream_retries_only_what_never_reached_a_plugin() -> None:
    tried, outcome = await attempts(NEVER_REACHED[0])
    assert len(set(tried)) == 2
    assert outcome is None
    tried, outcome = await attempts(LOST[0])
    assert len(tried) == 1
    assert isinstance(outcome, PluginUnavailableError)


def models(*queries: object) -> list[bytes]:
    return [json.dumps(q).encode() for q in queries]


def test_fingerprint_ignores_naming_and_order_but_not_content() -> None:
    a = {"refId": "A", "datasource": {"uid": "x"}, "expr": "up", "maxDataPoints": 5}
    b = {"expr": "rate(x[5m])", "refId": "B", "datasource": "x"}
    same = fingerprint("ns/ds", models(a, b))
    assert fingerprint("ns/ds", models({**b, "refId": "Z", "requestId": "r"},
                                       {"maxDataPoints": 5, "expr": "up", "refId": "C"})) == same
    assert fingerprint("ns/other", models(a, b)) != same
    assert fingerprint("ns/ds", models(a)) != same
    assert fingerprint("ns/ds", models({**a, "expr": "down"}, b)) != same
    deep = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert len(fingerprint("ns/ds", [deep, b"not json", b"[]"])) == 32  # never raises
    assert fingerprint("ns/ds", [deep]) != fingerprint("ns/ds", [b'{"x": 1}'])


def test_quarantine_refuses_for_a_while_then_forgets() -> None:
    now = [100.0]
    quarantine = Quarantine(60, max_entries=2, clock=lambda: now[0])
    assert not quarantine
    quarantine.check(b"q1")  # nothing quarantined: passes
    quarantine.add(b"q1", "testdata")
    assert quarantine
    now[0] = 130.2
    with pytest.raises(GatewayError) as refused:
        quarantine.check(b"q1")
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == "30"
    assert "testdata" in refused.value.message
    assert "kubectl logs --previous" in refused.value.message
    quarantine.check(b"q2")
    now[0] = 160.0
    assert not quarantine  # served its time: fingerprints are no longer computed
    quarantine.check(b"q1")
    for key in (b"a", b"b", b"c"):
        quarantine.add(key, "p")
    quarantine.check(b"a")  # the oldest went when the table was full
    with pytest.raises(GatewayError):
        quarantine.check(b"c")
    off = Quarantine(0)
    off.add(b"q", "p")
    assert not off


def json_frame(rows: int) -> bytes:
    values = ",".join(str(i) for i in range(rows))
    return (f'{{"schema":{{"name":"s","fields":[{{"name":"t","type":"time"}},'
            f'{{"name":"v","type":"number"}}]}},"data":{{"values":[[{values}],[{values}]]}}}}'
            ).encode()


def test_result_limits_count_series_and_values() -> None:
    limits = Limits(series_per_call=3, values_per_call=100)
    check_result_size([([json_frame(10)] * 3, FrameFormat.JSON)], limits)
    with pytest.raises(GatewayError) as series:
        check_result_size([([json_frame(1)] * 2, FrameFormat.JSON),
                           ([json_frame(1)] * 2, FrameFormat.JSON)], limits)
    assert series.value.status == 400
    assert "4 series" in series.value.message
    assert "--max-series-per-call" in series.value.message
    check_result_size([([json_frame(50)], FrameFormat.JSON)], limits)
    with pytest.raises(GatewayError) as values:
        check_result_size([([json_frame(51)], FrameFormat.JSON)], limits)
    assert "about 102 values" in values.value.message
    assert "--max-values-per-call" in values.value.message
    arrow = frame_to_arrow(Frame("f", [Field.of("v", FieldType.INT64, list(range(60))),
                                       Field.of("w", FieldType.INT64, list(range(60)))]))
    with pytest.raises(GatewayError, match="about 120 values"):
        check_result_size([([arrow], FrameFormat.ARROW)], limits)
    assert json.loads(json_frame(2))["data"]["values"] == [[0, 1], [0, 1]]
