"""Grafana's side accepts what our Python SDK produces: grafana-client (go-plugin client,
pluginv2 clients and the data package of Grafana's Go SDK) launches the Python sample the
way Grafana does and decodes its frames in both encodings Grafana can ask for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.go.go_support import (
    PYTHON_PLUGIN_ID,
    PYTHON_SAMPLE,
    ClientRunner,
    datasource,
    fields,
    query,
)

pytestmark = pytest.mark.integration

EXECUTABLE = PYTHON_SAMPLE / "gpx_testdata_python_linux_amd64"
HEALTHY = datasource({"endpoint": "https://example.invalid"}, {"apiKey": "secret"})


def run_python(grafana_client: ClientRunner, calls: list[dict[str, Any]],
               ds: dict[str, Any] = HEALTHY, env: tuple[str, ...] = ()) -> Any:
    return grafana_client(calls, plugin=EXECUTABLE, plugin_id=PYTHON_PLUGIN_ID, ds=ds, env=env)


@pytest.mark.parametrize("fmt", ["arrow", "json"])
def test_go_sdk_decodes_python_frames(grafana_client: ClientRunner, fmt: str) -> None:
    [result] = run_python(grafana_client, [query(
        {"refId": "A", "queryType": "random_walk", "seriesCount": 2, "maxDataPoints": 50},
        {"refId": "B", "queryType": "table"},
        {"refId": "C", "queryType": "error"},
        fmt=fmt)]).results
    responses = result["responses"]
    assert {r["format"] for r in responses.values()} == {fmt}, "DataResponse.format must echo"

    walk = responses["A"]
    assert walk["status"] == 200
    assert [f["name"] for f in walk["frames"]] == ["series-0", "series-1"]
    for series, frame in enumerate(walk["frames"]):
        by_name = fields(frame)
        assert frame["rows"] > 0
        assert frame["meta"]["type"] == "timeseries-multi"
        assert (by_name["time"]["type"], by_name["value"]["type"]) == ("time.Time", "float64")
        assert by_name["value"]["labels"] == {"series": str(series)}

    [table] = responses["B"]["frames"]
    by_name = fields(table)
    assert table["rows"] == 3
    assert {n: (f["type"], f["nullable"]) for n, f in by_name.items()} == {
        "time": ("time.Time", True), "name": ("string", True), "count": ("int64", False),
        "ratio": ("float64", False), "small": ("float32", True), "ok": ("bool", False),
        "big": ("uint64", False), "doc": ("json.RawMessage", False), "level": ("enum", False)}
    # nanosecond precision survives both encodings (JSON carries it in data.nanos)
    assert by_name["time"]["values"] == ["2023-11-14T22:13:20.000000001Z", None,
                                         "2023-11-14T22:13:20.123Z"]
    assert by_name["name"]["values"] == ["a", 'b "quoted" ü', None]
    assert by_name["ratio"]["values"] == ["NaN", "+Inf", "-Inf"]
    assert by_name["small"]["values"] == [0.5, None, 1.25]
    assert by_name["big"]["values"] == [0, 2**64 - 1, 7]
    assert by_name["count"]["values"] == [1, -(2**62), 2**62]
    assert by_name["doc"]["values"] == [{"a": 1}, [1, 2], "x"]

    failed = responses["C"]
    assert (failed["status"], failed["errorSource"]) == (502, "downstream")
    assert "502 Bad Gateway" in failed["error"]


def test_every_other_rpc_of_the_python_sample(grafana_client: ClientRunner) -> None:
    health, resource, metrics, subscribed, ran, published = run_python(grafana_client, [
        {"call": "health"},
        {"call": "resource", "path": "stream"},
        {"call": "metrics"},
        {"call": "subscribe", "path": "counter"},
        {"call": "stream", "path": "counter", "data": {"interval": 0.01}, "packets": 3},
        {"call": "publish", "path": "counter"},
    ]).results
    assert (health["status"], health["details"]["keyLength"]) == ("OK", 6)
    assert resource["status"] == 200
    assert resource["chunks"] == [f"chunk-{i}\n" for i in range(4)]
    assert "testdata_instances_created_total 1.0" in metrics["metrics"]
    assert subscribed["status"] == "OK"
    # the first packet carries the schema, later ones only data: both decode
    assert [fields(p)["value"]["values"] for p in ran["packets"]] == [[0], [1], [2]]
    assert published["status"] == "PERMISSION_DENIED"


def test_python_health_error_is_reported(grafana_client: ClientRunner) -> None:
    [health] = run_python(grafana_client, [{"call": "health"}],
                          ds=datasource({"endpoint": "https://example.invalid"})).results
    assert health["status"] == "ERROR"
    assert "apiKey" in health["message"]


def test_python_crash_is_seen_by_grafanas_client(grafana_client: ClientRunner) -> None:
    one = query({"refId": "A", "queryType": "table"})
    run = run_python(grafana_client, [one, one], env=("GF_PLUGIN_CRASH_AFTER_QUERIES=2",))
    first, second = run.results
    assert first["responses"]["A"]["status"] == 200
    assert second["error"]["code"] == "Unavailable"
    assert run.plugin == {"exited": True, "exitCode": 3}
