"""`plugin-operator host` serves the unmodified Go sample: Grafana's Go client (with --addr)
and our Python client both drive it through the host's gRPC port."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from plugin_operator.protocol.client import PluginClient
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CheckHealthRequest,
    DataQuery,
    DataSourceInstanceSettings,
    ErrorSource,
    FrameFormat,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    TimeRange,
)
from tests.integration.go.go_support import (
    GO_PLUGIN_ID,
    ClientRunner,
    GoBuild,
    datasource,
    fields,
    process_gone,
    query,
)
from tests.support.host_launcher import running_host

pytestmark = pytest.mark.integration

KEYED = datasource({"expectedApiKey": "s3cret"}, {"apiKey": "s3cret"})
CTX = PluginContext(
    org_id=1, plugin_id=GO_PLUGIN_ID,
    datasource_instance_settings=DataSourceInstanceSettings(
        id=1, uid="ds1", json_data=json.dumps(KEYED["jsonData"]).encode(),
        decrypted_secure_json_data=KEYED["secureJsonData"], last_updated_ms=1))


def go_query(ref: str, **model: object) -> DataQuery:
    return DataQuery(ref, json=json.dumps({"refId": ref, **model}).encode(), max_data_points=20,
                     time_range=TimeRange(1_700_000_000_000, 1_700_000_060_000))


async def test_grafana_client_through_the_host(go_build: GoBuild, grafana_client: ClientRunner,
                                               tmp_path: Path) -> None:
    async with running_host(go_build.dist, tmp_path) as host:
        run = await asyncio.to_thread(grafana_client, [
            {"call": "health"},
            query({"refId": "A", "queryType": "table"}, {"refId": "B", "queryType": "fail"},
                  fmt="json"),
            {"call": "resource", "path": "stream?chunks=3"},
            {"call": "stream", "path": "ticks", "data": {"intervalMs": 20}, "packets": 2},
            {"call": "metrics"},
        ], addr=host.grpc_target, ds=KEYED)
        assert await host.stop() == 0
    assert process_gone(host.plugin_pid), "the Go plugin outlived the host"
    health, queried, resource, ran, metrics = run.results
    assert health["status"] == "OK"
    table = queried["responses"]["A"]
    assert table["format"] == "json"
    assert fields(table["frames"][0])["seen"]["values"][0] == "2024-01-02T03:04:05.600000123Z"
    assert queried["responses"]["B"]["errorSource"] == "downstream"
    assert len(resource["chunks"]) == 3
    assert len(ran["packets"]) == 2
    assert 'sample_go_queries_total{outcome="ok",query_type="table"} 1' in metrics["metrics"]
    assert run.plugin is None, "with --addr the client launches nothing"


@pytest.mark.parametrize("fmt", [FrameFormat.ARROW, FrameFormat.JSON])
async def test_python_client_decodes_go_frames(go_build: GoBuild, tmp_path: Path,
                                               fmt: FrameFormat) -> None:
    async with running_host(go_build.dist, tmp_path) as host, \
            PluginClient(host.grpc_target) as client:
        reply = await client.query_data(QueryDataRequest(CTX, [
            go_query("A", queryType="randomWalk", seriesCount=2, labels={"env": "t"}),
            go_query("B", queryType="table"), go_query("C", queryType="fail")], format=fmt))
        walk, table, failed = (reply.responses[k] for k in "ABC")
        assert walk.format is fmt
        assert [f.rows for f in walk.frames] == [20, 20]
        assert walk.frames[1].field("value").labels == {"env": "t", "series": "1"}
        [frame] = table.frames
        assert frame.field("ratio").to_pylist() == [0.25, None, 0.25]
        assert frame.field("seen").to_pylist()[0] == 1_704_164_645_600_000_123
        assert frame.field("name").to_pylist() == ["alpha", "beta", "gamma"]
        assert (failed.status, failed.error_source) == (502, ErrorSource.DOWNSTREAM)

        health = await client.check_health(CheckHealthRequest(CTX))
        assert health.status is HealthStatus.OK
        parts = [p async for p in client.call_resource_stream(
            CallResourceRequest(CTX, "stream", url="stream?chunks=4"))]
        assert [json.loads(p.body)["chunk"] for p in parts] == [0, 1, 2, 3]

        async with aiohttp.ClientSession() as http, \
                http.get(host.http_url + "/metrics") as response:
            text = await response.text()
        assert "sample_go_queries_total" in text
        assert "plugin_operator_host_plugin_up 1.0" in text


async def test_go_crash_through_a_host_that_leaves_restarts_to_the_kubelet(
        go_build: GoBuild, tmp_path: Path) -> None:
    async with running_host(go_build.dist, tmp_path,
                            ["--setting", "crash_after_queries=1",
                             "--crash-loop-exits", "1"]) as host, \
            PluginClient(host.grpc_target) as client:
        first = await client.query_data(QueryDataRequest(CTX, [go_query("A", queryType="table")]))
        assert first.responses["A"].status == 200
        with pytest.raises(PluginError):
            await client.query_data(QueryDataRequest(CTX, [go_query("A", queryType="table")]))
        code = await asyncio.wait_for(host.process.wait(), 30)
    assert code != 0
    message = host.termination_log.read_text()
    assert "exited with code 2" in message
    assert "crash switch" in message
