"""The Go sample, launched by grafana-client exactly as Grafana launches plugins."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.package.plugin_json import load_plugin_json, resolve_executable
from tests.integration.go.go_support import (
    BUILD_SCRIPT,
    GO_PLUGIN_ID,
    ClientRunner,
    GoBuild,
    datasource,
    fields,
    query,
)

pytestmark = pytest.mark.integration

KEYED = datasource({"expectedApiKey": "s3cret"}, {"apiKey": "s3cret"})


def test_dist_is_a_grafana_plugin_directory_and_zip(go_build: GoBuild) -> None:
    plugin = load_plugin_json(go_build.dist)
    assert (plugin.id, plugin.type, plugin.backend) == (GO_PLUGIN_ID, "datasource", True)
    assert resolve_executable(go_build.dist, plugin, "linux", "amd64") == go_build.executable
    with zipfile.ZipFile(go_build.zip) as archive:
        names = sorted(archive.namelist())
        mode = archive.getinfo(f"{GO_PLUGIN_ID}/gpx_sample_go_linux_amd64").external_attr >> 16
    assert names == [f"{GO_PLUGIN_ID}/gpx_sample_go_linux_amd64", f"{GO_PLUGIN_ID}/plugin.json"]
    assert mode & 0o111, "the executable lost its exec bits in the zip"


def test_build_script_is_cached(go_build: GoBuild) -> None:
    again = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600,
                           check=True)
    assert "building" not in again.stderr
    assert f"GRAFANA_CLIENT={go_build.grafana_client}" in again.stdout


def test_refuses_to_run_without_grafanas_cookie(go_build: GoBuild) -> None:
    direct = subprocess.run([str(go_build.executable)], capture_output=True, text=True,
                            timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert direct.returncode == 1
    assert "This binary is a plugin" in direct.stderr


@pytest.mark.parametrize(
    ("ds", "status", "message"),
    [
        (KEYED, "OK", "API key accepted"),
        (datasource({"expectedApiKey": "s3cret"}, {"apiKey": "wrong"}), "ERROR",
         "does not match jsonData.expectedApiKey"),
        (datasource({"expectedApiKey": "s3cret"}), "ERROR", "secure field apiKey is empty"),
        (datasource({}, {"apiKey": "s3cret"}), "ERROR", "jsonData.expectedApiKey is not set"),
    ],
)
def test_health_uses_json_data_and_secure_data(
        go_build: GoBuild, grafana_client: ClientRunner, ds: dict[str, Any], status: str,
        message: str) -> None:
    [health] = grafana_client([{"call": "health"}], plugin=go_build.executable, ds=ds).results
    assert health["status"] == status
    assert message in health["message"]
    assert health["details"]["uid"] == "ds1"


@pytest.mark.parametrize("fmt", ["arrow", "json"])
def test_queries_decode_with_the_sdk(go_build: GoBuild, grafana_client: ClientRunner,
                                     fmt: str) -> None:
    run = grafana_client([query(
        {"refId": "A", "queryType": "randomWalk", "seriesCount": 2, "labels": {"env": "test"},
         "maxDataPoints": 50, "seed": 7},
        {"refId": "B", "queryType": "table"},
        {"refId": "C", "queryType": "fail"},
        fmt=fmt)], plugin=go_build.executable, ds=KEYED)
    responses = run.results[0]["responses"]
    assert {r["format"] for r in responses.values()} == {fmt}

    walk = responses["A"]
    assert walk["status"] == 200
    assert [f["rows"] for f in walk["frames"]] == [50, 50]
    for series, frame in enumerate(walk["frames"]):
        by_name = fields(frame)
        assert (by_name["time"]["type"], by_name["value"]["type"]) == ("time.Time", "float64")
        assert by_name["value"]["labels"] == {"env": "test", "series": str(series)}
        assert frame["meta"]["type"] == "timeseries-multi"
        assert by_name["time"]["values"][0] == "2023-11-14T22:13:20Z"

    [table] = responses["B"]["frames"]
    by_name = fields(table)
    assert table["rows"] == 3
    assert {n: (f["type"], f["nullable"]) for n, f in by_name.items()} == {
        "name": ("string", False), "count": ("int64", False), "ratio": ("float64", True),
        "up": ("bool", False), "seen": ("time.Time", False)}
    assert by_name["ratio"]["values"] == [0.25, None, 0.25]
    assert by_name["ratio"]["config"] == {"unit": "percentunit"}
    assert by_name["seen"]["values"][0] == "2024-01-02T03:04:05.600000123Z"

    failed = responses["C"]
    assert (failed["status"], failed["errorSource"], failed["frames"]) == (502, "downstream", [])
    assert "downstream service refused" in failed["error"]


def test_unknown_query_type_is_a_clear_bad_request(go_build: GoBuild,
                                                   grafana_client: ClientRunner) -> None:
    run = grafana_client([query({"refId": "A", "queryType": "nope"})], plugin=go_build.executable)
    answer = run.results[0]["responses"]["A"]
    assert answer["status"] == 400
    assert "unknown queryType \"nope\"" in answer["error"]


def test_slow_query_honours_cancellation(go_build: GoBuild,
                                         grafana_client: ClientRunner) -> None:
    run = grafana_client([
        query({"refId": "S", "queryType": "slow", "sleepMs": 600_000}, timeoutMs=300),
        {"call": "health"},
        # keeps the session open a little, so the plugin's log line is read before the Kill
        {"call": "stream", "path": "ticks", "data": {"intervalMs": 50}, "packets": 4},
    ], plugin=go_build.executable, ds=KEYED)
    slow, health, _ = run.results
    assert slow["error"]["code"] == "DeadlineExceeded"
    assert health["status"] == "OK", "the plugin should keep serving after a cancelled query"
    assert "slow query cancelled" in run.stderr


def test_resources_json_and_streamed_chunks(go_build: GoBuild,
                                            grafana_client: ClientRunner) -> None:
    settings, echo, streamed, bad = grafana_client([
        {"call": "resource", "path": "settings"},
        {"call": "resource", "method": "POST", "path": "echo", "body": {"hello": "go"}},
        {"call": "resource", "path": "stream?chunks=4"},
        {"call": "resource", "path": "stream?chunks=0"},
    ], plugin=go_build.executable, ds=KEYED).results
    assert settings["status"] == 200
    assert json.loads(settings["body"]) == {"uid": "ds1", "crashAfterQueries": 0,
                                            "hasApiKey": True}
    assert json.loads(echo["body"]) == {"method": "POST", "body": {"hello": "go"}}
    assert streamed["headers"]["Content-Type"] == ["application/x-ndjson"]
    assert [json.loads(c) for c in streamed["chunks"]] == [
        {"chunk": i, "of": 4} for i in range(4)]
    assert bad["status"] == 400
    assert "chunks must be an integer from 1 to 1000" in bad["body"]


def test_metrics_include_the_custom_counters(go_build: GoBuild,
                                             grafana_client: ClientRunner) -> None:
    *_, metrics = grafana_client([
        {"call": "health"},
        query({"refId": "A", "queryType": "table"}),
        {"call": "metrics"},
    ], plugin=go_build.executable, ds=KEYED).results
    text = metrics["metrics"]
    assert 'sample_go_queries_total{outcome="ok",query_type="table"} 1' in text
    assert 'sample_go_health_checks_total{status="OK"} 1' in text
    assert "sample_go_instances_created_total 1" in text
    assert "go_goroutines" in text  # the SDK's default registry, not only ours


def test_streams_subscribe_run_and_publish(go_build: GoBuild,
                                           grafana_client: ClientRunner) -> None:
    subscribed, unknown, ran, published = grafana_client([
        {"call": "subscribe", "path": "ticks"},
        {"call": "subscribe", "path": "nope"},
        {"call": "stream", "path": "ticks", "data": {"intervalMs": 20}, "packets": 3},
        {"call": "publish", "path": "ticks", "data": {"x": 1}},
    ], plugin=go_build.executable, ds=KEYED).results
    assert subscribed["status"] == "OK"
    assert [f["name"] for f in subscribed["data"]["schema"]["fields"]] == ["time", "tick"]
    assert unknown["status"] == "NOT_FOUND"
    assert [fields(p)["tick"]["values"] for p in ran["packets"]] == [[0], [1], [2]]
    assert published["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("switch", ["jsonData", "env"])
def test_crash_switch_exits_with_status_2(go_build: GoBuild, grafana_client: ClientRunner,
                                          switch: str) -> None:
    ds = datasource({"crashAfterQueries": 2}) if switch == "jsonData" else datasource()
    env = ["GF_PLUGIN_CRASH_AFTER_QUERIES=2"] if switch == "env" else []
    one = query({"refId": "A", "queryType": "table"})
    run = grafana_client([one, one, one], plugin=go_build.executable, ds=ds, env=env)
    first, second, third = run.results
    assert first["responses"]["A"]["status"] == second["responses"]["A"]["status"] == 200
    assert third["error"]["code"] == "Unavailable"
    assert run.plugin == {"exited": True, "exitCode": 2}
    assert "crash switch: exiting with status 2" in run.stderr


def test_plugin_stops_on_grafanas_shutdown(go_build: GoBuild,
                                           grafana_client: ClientRunner) -> None:
    run = grafana_client([{"call": "health"}], plugin=go_build.executable, ds=KEYED)
    assert run.plugin == {"exited": False, "exitCode": None}  # alive until the Kill
    assert "plugin process exited" in run.stderr


def test_frame_json_bench_writes_the_same_frame_as_arrow(go_build: GoBuild,
                                                         tmp_path: Path) -> None:
    import pyarrow as pa

    arrow = tmp_path / "frame.arrow"
    done = subprocess.run([str(go_build.frame_json_bench), "--rows", "1000", "--repeat", "1",
                           "--arrow-out", str(arrow), "--json-out", str(tmp_path / "f.json")],
                          capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert report["rows"] == 1000
    assert report["bytes"] == (tmp_path / "f.json").stat().st_size
    table = pa.ipc.open_file(pa.OSFile(str(arrow))).read_all()
    assert table.num_rows == 1000
    assert table.schema.field("time").type == pa.timestamp("ns")
    assert table.schema.metadata[b"refId"] == b"A"
    frame_json = json.loads((tmp_path / "f.json").read_text())
    assert len(frame_json["data"]["values"][0]) == 1000


def test_instance_is_rebuilt_when_settings_change(go_build: GoBuild,
                                                  grafana_client: ClientRunner) -> None:
    *healths, metrics = grafana_client([
        {"call": "health"},
        {"call": "health"},
        {"call": "health", "lastUpdatedMS": 1_800_000_000_000},
        {"call": "metrics"},
    ], plugin=go_build.executable, ds=KEYED).results
    assert [h["details"]["settingsMs"] for h in healths] == [
        1_700_000_000_000, 1_700_000_000_000, 1_800_000_000_000]
    assert "sample_go_instances_created_total 2" in metrics["metrics"]
