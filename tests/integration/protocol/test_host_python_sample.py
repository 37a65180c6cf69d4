"""The real host running the real Python sample; every RPC through the host's gRPC port."""

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from plugin_operator.protocol.client import PluginClient
from plugin_operator.protocol.errors import MethodNotImplementedError, PluginError
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CheckHealthRequest,
    CollectMetricsRequest,
    DataQuery,
    DataSourceInstanceSettings,
    ErrorSource,
    FrameFormat,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    StreamRequest,
    StreamStatus,
    TimeRange,
)
from plugin_operator.protocol.stubs import backend_pb2
from tests.support.host_launcher import running_host
from tests.support.wait import eventually_async

pytestmark = pytest.mark.integration

CTX = PluginContext(
    org_id=1, plugin_id="plugin-operator-testdata-datasource",
    datasource_instance_settings=DataSourceInstanceSettings(
        id=1, uid="ds1", json_data=b'{"endpoint":"https://example.invalid"}',
        decrypted_secure_json_data={"apiKey": "secret"}, last_updated_ms=1))


def query(ref: str, **model: object) -> DataQuery:
    return DataQuery(ref, json=json.dumps(model).encode(), max_data_points=50,
                     time_range=TimeRange(1_700_000_000_000, 1_700_000_060_000))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers signal 0; check its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("fmt", [FrameFormat.ARROW, FrameFormat.JSON])
async def test_every_rpc_through_the_host(testdata_dir: Path, tmp_path: Path,
                                          fmt: FrameFormat) -> None:
    async with running_host(testdata_dir, tmp_path) as host, \
            PluginClient(host.grpc_target) as client:
        reply = await client.query_data(QueryDataRequest(CTX, [
            query("A", scenario="random_walk", seriesCount=2), query("B", scenario="table"),
            query("C", scenario="error")], format=fmt))
        a, b, c = (reply.responses[k] for k in "ABC")
        assert a.format is fmt
        assert a.status == 200
        assert [f.name for f in a.frames] == ["series-0", "series-1"]
        assert a.frames[0].rows == 50
        assert a.frames[0].field("value").labels == {"series": "0"}
        ratio = b.frames[0].field("ratio").to_pylist()
        assert math.isnan(ratio[0])
        assert ratio[1:] == [math.inf, -math.inf]
        assert b.frames[0].field("time").to_pylist()[0] == 1_700_000_000_000_000_001
        assert b.frames[0].field("big").to_pylist()[1] == 2**64 - 1
        assert (c.status, c.error_source) == (502, ErrorSource.DOWNSTREAM)

        chunks = [chunk async for chunk in client.query_chunked_data(
            QueryDataRequest(CTX, [query("A", scenario="table")], format=fmt))]
        assert chunks[0].frame is not None
        assert chunks[0].frame.name == "table"

        resource = await client.call_resource(CallResourceRequest(CTX, "json"))
        assert json.loads(resource.body)["uid"] == "ds1"
        parts = [p async for p in client.call_resource_stream(CallResourceRequest(CTX, "stream"))]
        assert len(parts) == 4
        assert parts[0].headers["Content-Type"] == ["text/plain"]

        health = await client.check_health(CheckHealthRequest(CTX))
        assert health.status is HealthStatus.OK
        assert json.loads(health.json_details)["keyLength"] == 6
        no_key = PluginContext(plugin_id="p", datasource_instance_settings=
                               DataSourceInstanceSettings(id=2, json_data=b'{"endpoint":"e"}'))
        unhealthy = await client.check_health(CheckHealthRequest(no_key))
        assert unhealthy.status is HealthStatus.ERROR
        assert "apiKey" in unhealthy.message

        metrics = await client.collect_metrics(CollectMetricsRequest(CTX))
        assert b'testdata_queries_total{scenario="table"}' in metrics.prometheus

        assert (await client.subscribe_stream(StreamRequest(CTX, "counter"))).status \
            is StreamStatus.OK
        assert (await client.subscribe_stream(StreamRequest(CTX, "nope"))).status \
            is StreamStatus.NOT_FOUND
        assert (await client.publish_stream(StreamRequest(CTX, "counter"))).status \
            is StreamStatus.PERMISSION_DENIED
        packets = [p async for p in client.run_stream(
            StreamRequest(CTX, "counter", b'{"count": 3, "interval": 0}'))]
        assert len(packets) == 3
        assert b'"schema"' in packets[0]

        assert await client.health()
        with pytest.raises(MethodNotImplementedError):  # the plugin's own answer, untouched
            await client.validate_admission(backend_pb2.AdmissionRequest())
        with pytest.raises(PluginError) as slow:
            await client.query_data(QueryDataRequest(CTX, [query("A", scenario="slow",
                                                                 seconds=30)]), timeout=0.5)
        assert slow.value.code is grpc.StatusCode.DEADLINE_EXCEEDED

        async with aiohttp.ClientSession() as http:
            async with http.get(host.http_url + "/metrics") as response:
                text = await response.text()
                assert "plugin_operator_host_plugin_up 1.0" in text
                assert "testdata_queries_total" in text
                # plugin-front's own, served with the host's
                assert 'plugin_operator_host_forwarded_bytes_total{direction="to_plugin"}' \
                    in text
                assert "plugin_operator_host_open_connections 1" in text
                assert "plugin_operator_host_front_up 1.0" in text
                assert ('plugin_operator_front_calls_total{port="local",'
                        'method="/pluginv2.Data/QueryData",code="OK"} 1') in text
                assert ('plugin_operator_front_calls_total{port="local",'
                        'method="/pluginv2.Stream/RunStream",code="OK"} 1') in text
                assert ('plugin_operator_front_calls_total{port="local",'
                        'method="/pluginv2.AdmissionControl/ValidateAdmission",'
                        'code="Unimplemented"} 1') in text
            for path in ("/healthz", "/readyz"):
                async with http.get(host.http_url + path) as response:
                    assert response.status == 200
        plugin_pid = host.plugin_pid
        assert await host.stop() == 0
    assert _gone(plugin_pid), "the plugin process outlived the host"


async def test_tcp_listener_works(testdata_dir: Path, tmp_path: Path) -> None:
    async with running_host(testdata_dir, tmp_path,
                            env={"PLUGIN_OPERATOR_SDK_NETWORK": "tcp"}) as host, \
            PluginClient(host.grpc_target) as client:
        reply = await client.query_data(QueryDataRequest(CTX, [query("A", scenario="table")]))
        assert reply.responses["A"].status == 200
    assert '"plugin_address": "127.0.0.1:' in host.output.read_text()


async def test_a_crash_is_restarted_in_place_and_reported(testdata_dir: Path,
                                                         tmp_path: Path) -> None:
    async with running_host(testdata_dir, tmp_path,
                            ["--setting", "crash_after_queries=2"]) as host, \
            PluginClient(host.grpc_target) as client, aiohttp.ClientSession() as http:
        await client.query_data(QueryDataRequest(CTX, [query("A", scenario="table")]))
        with pytest.raises(PluginError):
            await client.query_data(QueryDataRequest(CTX, [query("A", scenario="table")]))

        async def restarts() -> Any:
            async with http.get(host.http_url + "/restarts") as response:
                report = await response.json()
            return report if report["restarts"] == 1 else None

        report = await eventually_async("the host's restart report", restarts, timeout_s=30)
        assert report["last"]["exitCode"] == 3
        assert "crashing on purpose after 2 queries" in report["last"]["message"]

        async def serving() -> bool:
            try:
                reply = await client.query_data(QueryDataRequest(
                    CTX, [query("B", scenario="table")]), timeout=2.0)
            except PluginError:
                return False
            return reply.responses["B"].status == 200

        await eventually_async("the restarted plugin serving", serving, timeout_s=30)
        assert host.process.returncode is None  # the host, and so the container, stayed


async def test_with_no_in_pod_restarts_a_crash_ends_the_host_with_a_message(
        testdata_dir: Path, tmp_path: Path) -> None:
    async with running_host(testdata_dir, tmp_path,
                            ["--setting", "crash_after_queries=2",
                             "--crash-loop-exits", "1"]) as host, \
            PluginClient(host.grpc_target) as client:
        await client.query_data(QueryDataRequest(CTX, [query("A", scenario="table")]))
        with pytest.raises(PluginError):
            await client.query_data(QueryDataRequest(CTX, [query("A", scenario="table")]))
        code = await asyncio.wait_for(host.process.wait(), 30)
    assert code == 3
    message = host.termination_log.read_text()
    assert "exited with code 3" in message
    assert "crashing on purpose after 2 queries" in message


async def test_chatty_plugin_does_not_block(testdata_dir: Path, tmp_path: Path) -> None:
    async with running_host(testdata_dir, tmp_path) as host, \
            PluginClient(host.grpc_target, timeout=60) as client:
        reply = await client.query_data(QueryDataRequest(CTX, [query("A", scenario="chatty",
                                                                     megabytes=8)]))
        assert reply.responses["A"].status == 200
        again = await client.query_data(QueryDataRequest(CTX, [query("B", scenario="table")]))
        assert again.responses["B"].status == 200
        async with aiohttp.ClientSession() as http, \
                http.get(host.http_url + "/metrics") as response:
            text = await response.text()
    line = next(x for x in text.splitlines()
                if x.startswith('plugin_operator_host_plugin_output_bytes_total{stream="stdout"}'))
    assert float(line.split()[-1]) >= 8 * 1024 * 1024


def test_running_the_plugin_by_hand_explains_itself(testdata_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "grafana_plugin_type"}
    # as a newcomer would: inside the venv, so python3 is the one with plugin_operator
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    result = subprocess.run([str(testdata_dir / "gpx_testdata_python_linux_amd64")], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "This binary is a plugin" in result.stderr
    assert result.stdout == ""
