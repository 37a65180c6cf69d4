"""Error mapping, /api/ds/query parsing, result encoding and time ranges."""

from __future__ import annotations

import json

import grpc
import pytest

from plugin_operator.gateway import query
from plugin_operator.gateway.errors import GatewayError, from_plugin_error, result_status
from plugin_operator.gateway.timerange import TimeRangeError, parse_range, parse_time, shown
from plugin_operator.protocol.errors import (
    MethodNotImplementedError,
    PluginError,
    PluginUnavailableError,
)
from plugin_operator.protocol.frames import Field, FieldType, Frame, frame_to_arrow, frame_to_json
from plugin_operator.protocol.models import FrameFormat

NOW = 1_700_000_000_000


@pytest.mark.parametrize(("exc", "status"), [
    (PluginUnavailableError("down", code=grpc.StatusCode.UNAVAILABLE), 503),
    (MethodNotImplementedError("no", code=grpc.StatusCode.UNIMPLEMENTED), 404),
    (PluginError("slow", code=grpc.StatusCode.DEADLINE_EXCEEDED), 504),
    (PluginError("boom"), 500),
])
def test_plugin_errors_map_to_grafanas_statuses(exc: PluginError, status: int) -> None:
    error = from_plugin_error(exc, other_message="Failed to call resource")
    assert error.status == status
    assert json.loads(error.body())["statusCode"] == status


def test_result_status_follows_grafana() -> None:
    # The SDK reads a status outside 100-599 as StatusUnknown (500), error or not.
    assert result_status(0, "") == 500
    assert result_status(0, "bad") == 500
    assert result_status(1000, "") == 500
    assert result_status(200, "") == 200
    assert result_status(502, "bad") == 502


def test_time_parsing() -> None:
    assert parse_time("now", NOW, field="to") == NOW
    assert parse_time("now-6h", NOW, field="from") == NOW - 6 * 3_600_000
    assert parse_time("now+1m", NOW, field="to") == NOW + 60_000
    assert parse_time("1600000000000", NOW, field="from") == 1_600_000_000_000
    assert parse_time(5, NOW, field="from") == 5
    assert parse_time("now/d", NOW, field="from") % 86_400_000 == 0
    with pytest.raises(TimeRangeError, match="from='yesterday'"):
        parse_time("yesterday", NOW, field="from")
    with pytest.raises(TimeRangeError, match="after"):
        parse_range("now", "now-1h", NOW)


def test_query_request_groups_by_datasource_and_keeps_the_model() -> None:
    body = json.dumps({"from": "now-1h", "to": "now", "queries": [
        {"refId": "A", "datasource": {"uid": "x"}, "expr": "up"},
        {"refId": "B", "datasource": {"uid": "y"}, "queryType": "t", "maxDataPoints": 5},
        {"refId": "C", "datasource": "x", "intervalMs": 10}]}).encode()
    parsed = query.parse_query_request(body, NOW)
    assert parsed.ref_ids == ["A", "B", "C"]
    assert sorted(parsed.by_datasource) == ["x", "y"]
    a, c = parsed.by_datasource["x"].queries
    (b,) = parsed.by_datasource["y"].queries
    assert (a.ref_id, c.ref_id, b.ref_id) == ("A", "C", "B")
    assert a.model() == {"refId": "A", "datasource": {"uid": "x"}, "expr": "up"}
    assert (a.max_data_points, a.interval_ms) == (100, 1000)
    assert (b.query_type, b.max_data_points, c.interval_ms) == ("t", 5, 10)
    assert (a.time_range.from_ms, a.time_range.to_ms) == (NOW - 3_600_000, NOW)
    default_ref = query.parse_query_request(b'{"queries": [{"datasource": "x"}]}', NOW)
    assert default_ref.ref_ids == ["A"]


def test_query_request_errors_are_clear() -> None:
    def bad(payload: object) -> str:
        with pytest.raises(GatewayError) as error:
            query.parse_query_request(json.dumps(payload).encode(), NOW)
        assert error.value.status == 400
        return error.value.message

    assert "non-empty" in bad({"queries": []})
    assert "no datasource" in bad({"queries": [{"refId": "A"}]})
    assert "used twice" in bad({"queries": [{"refId": "A", "datasource": "x"},
                                            {"refId": "A", "datasource": "x"}]})
    assert "built into" in bad({"queries": [{"datasource": {"uid": "__expr__"}}]})
    assert "not a time" in bad({"from": "soon", "queries": [{"datasource": "x"}]})
    assert "maxDataPoints" in bad({"queries": [{"datasource": "x", "maxDataPoints": "9"}]})
    with pytest.raises(GatewayError, match="not JSON"):
        query.parse_query_request(b"{", NOW)


def test_results_are_encoded_like_grafana() -> None:
    frame = Frame("f", [Field.of("v", FieldType.INT64, [1, 2])], ref_id="A")
    results = {
        "B": query.result_from_response([], FrameFormat.JSON, "it broke", 0, "downstream"),
        "A": query.result_from_response([frame_to_arrow(frame)], FrameFormat.ARROW, "", 200,
                                        ""),
    }
    encoded = query.encode_results(results)
    decoded = json.loads(encoded)
    assert list(decoded["results"]) == ["A", "B"]
    assert decoded["results"]["A"] == {"status": 200,
                                       "frames": [json.loads(frame_to_json(frame))]}
    assert decoded["results"]["B"] == {"error": "it broke", "errorSource": "downstream",
                                       "status": 500, "frames": []}
    assert query.overall_status(results) == 400
    assert query.overall_status({"A": results["A"]}) == 200


def test_json_frames_pass_through_byte_for_byte() -> None:
    raw = b'{"schema":{"fields":[]},"data":{"values":[]}}'
    assert query.frames_as_json([raw], FrameFormat.JSON) == [raw]


def test_hostile_bodies_are_refused_before_they_cost_memory() -> None:
    def message(body: bytes) -> str:
        with pytest.raises(GatewayError) as error:
            query.parse_query_request(body, NOW)
        assert error.value.status == 400
        return error.value.message

    # Nested 100,000 deep, or 200,000 tiny queries: refused by counting, before parsing.
    assert "JSON objects and arrays" in message(b"[" * 100_000 + b"]" * 100_000)
    many = b'{"queries":[' + b",".join([b'{"datasource":"x"}'] * 200_000) + b"]}"
    assert "200002 JSON objects and arrays" in message(many)
    # Deeper than Python's parser goes, yet within the count: still a 400.
    deep = b'{"queries":[{"datasource":"x","m":' + b"[" * 5000 + b"]" * 5000 + b"}]}"
    assert "nested too deeply" in message(deep)
    hundred_and_one = json.dumps({"queries": [{"datasource": "x", "refId": str(i)}
                                              for i in range(101)]}).encode()
    assert "--max-queries-per-request" in message(hundred_and_one)


def test_time_bounds_are_checked() -> None:
    assert parse_time(0, NOW, field="from") == 0
    assert parse_time(" 1700000000000 ", NOW, field="from") == 1_700_000_000_000
    for bad in (None, {}, [], float("nan"), float("inf"), 1e30, -1, "now-99999999999999y",
                "9" * 30, "\u0661"):
        with pytest.raises(TimeRangeError):
            parse_time(bad, NOW, field="from")


@pytest.mark.parametrize("body", [
    b'{"queries": [{"datasource": "x"}]}\r\n\t ',
    b'\xef\xbb\xbf{"queries": [{"datasource": "x"}]}',  # a UTF-8 BOM
    '{"queries": [{"datasource": "x"}]}'.encode("utf-16"),
    '{"queries": [{"datasource": "x"}]}'.encode("utf-16-le"),
    b' {"queries": [{"datasource": "x"}]}',
    b'{"queries": [{"datasource": "x"}]} {}',  # extra data
    b'{"queries": [{"datasource": "x"}]}\x0c',  # not JSON whitespace
    b'{"queries": [{"datasource": "\xff"}]}',  # not UTF-8
    b'{"queries": [{"datasource": "x"}]',
])
def test_bodies_are_read_exactly_as_json_loads_reads_them(body: bytes) -> None:
    # The usual body skips json.loads's encoding detection; every body still gets the
    # answer json.loads gives it, refusals worded the same.
    refusal = ""
    try:
        json.loads(body)
    except ValueError as exc:
        refusal = f"the body is not JSON: {shown(str(exc), 200)}"
    if not refusal:
        assert query.parse_query_request(body, NOW).ref_ids == ["A"]
        return
    with pytest.raises(GatewayError) as error:
        query.parse_query_request(body, NOW)
    assert error.value.message == refusal


def test_epoch_strings_and_their_look_alikes() -> None:
    assert parse_range("1700000000000", "1700000600000", NOW) == \
        parse_range(1_700_000_000_000, 1_700_000_600_000, NOW)
    assert parse_time("0", NOW, field="from") == 0
    for bad in ("\u00b2", "1\u0661", "9" * 16, "-5", "+5", "1_000"):
        with pytest.raises(TimeRangeError):
            parse_time(bad, NOW, field="from")
