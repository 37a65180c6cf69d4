"""The host's gRPC ports are plugin-front's: real hosts running the real Go and Python
samples. go-plugin's private services are refused on every port while the plugin keeps
serving; the attach port balances each call over the replicas; SIGTERM drains; a front
that dies takes the host down with a message."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import grpc
import pytest

from plugin_operator.host.front import FRONT_ENV
from plugin_operator.protocol.client import PluginClient
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import (
    CheckHealthRequest,
    DataQuery,
    DataSourceInstanceSettings,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    TimeRange,
)
from tests.support.host_launcher import HostStartError, RunningHost, running_host, start_host
from tests.support.net import free_port
from tests.support.samples import build_sample_go

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
PYTHON_SAMPLE = REPO / "plugins" / "testdata-python"
PLUGIN_IDS = {"go": "plugin-operator-sample-go-datasource",
              "python": "plugin-operator-testdata-datasource"}
QUERIES = {"go": {"queryType": "table"}, "python": {"scenario": "table"}}
# What go-plugin's client calls on a plugin's connection, and reflection: never passed on.
PRIVATE_UNARY = ["/plugin.GRPCController/Shutdown"]
PRIVATE_STREAMS = ["/plugin.GRPCStdio/StreamStdio", "/plugin.GRPCBroker/StartStream",
                   "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                   "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]


@pytest.fixture(scope="module")
def sample_dirs() -> dict[str, Path]:
    return {"go": build_sample_go()["SAMPLE_GO_DIST"], "python": PYTHON_SAMPLE}


def context(sample: str) -> PluginContext:
    return PluginContext(org_id=1, plugin_id=PLUGIN_IDS[sample],
                         datasource_instance_settings=DataSourceInstanceSettings(
                             id=1, uid="ds1", json_data=json.dumps(
                                 {"endpoint": "https://example.invalid",
                                  "expectedApiKey": "secret"}).encode(),
                             decrypted_secure_json_data={"apiKey": "secret"},
                             last_updated_ms=1))


def query(sample: str) -> QueryDataRequest:
    return QueryDataRequest(context(sample), [DataQuery(
        "A", json=json.dumps({"refId": "A", **QUERIES[sample]}).encode(), max_data_points=10,
        time_range=TimeRange(1_700_000_000_000, 1_700_000_060_000))])


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def host_metrics(host: RunningHost) -> str:
    async with aiohttp.ClientSession() as http, \
            http.get(host.http_url + "/metrics") as response:
        return await response.text()


def metric(text: str, prefix: str) -> float:
    """The sum of the series whose line starts with ``prefix``."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


async def refused(target: str) -> list[str]:
    """Call each private method the way go-plugin's client does; the messages we got."""
    messages = []
    async with grpc.aio.insecure_channel(target) as channel:
        for method in PRIVATE_UNARY:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary(method)(b"", timeout=5)  # plugin.Empty{}
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            messages.append(error.value.details() or "")
        for method in PRIVATE_STREAMS:
            # One message and the half-close in one go, as go-plugin's StreamStdio call
            # sends them (a request iterator would race the early refusal in grpc.aio).
            call = channel.unary_stream(method)(b"", timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in call:
                    pass
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            messages.append(error.value.details() or "")
    return messages


@pytest.mark.parametrize("sample", ["go", "python"])
async def test_go_plugin_services_are_refused_and_the_plugin_keeps_serving(
        sample: str, sample_dirs: dict[str, Path], tmp_path: Path) -> None:
    async with running_host(sample_dirs[sample], tmp_path, ["--attach-port", "0"]) as host:
        pid = host.plugin_pid
        for target in (host.grpc_target, host.attach_target):
            messages = await refused(target)
            assert all("only pluginv2.* and grpc.health.v1.Health" in m for m in messages)
            async with PluginClient(target) as client:
                # Our own client's go-plugin calls meet the same refusal.
                with pytest.raises(PluginError) as shutdown:
                    await client.shutdown()
                assert shutdown.value.code is grpc.StatusCode.UNIMPLEMENTED
                await asyncio.sleep(0.3)  # a plugin told to stop would be gone by now
                reply = await client.query_data(query(sample))
                assert reply.responses["A"].status == 200
                health = await client.check_health(CheckHealthRequest(context(sample)))
                assert health.status is HealthStatus.OK
                assert await client.health()
        assert running(pid), "the plugin stopped"  # the same process, still serving
        assert host.process.returncode is None
        text = await host_metrics(host)
        for port in ("local", "attach"):
            assert metric(text, "plugin_operator_front_refused_calls_total{"
                                f'port="{port}",service="plugin.GRPCController"}}') == 2
            assert metric(text, "plugin_operator_front_refused_calls_total{"
                                f'port="{port}",service="plugin.GRPCStdio"}}') == 1
        assert metric(text, 'plugin_operator_front_calls_total{port="attach",'
                            'method="/pluginv2.Data/QueryData",code="OK"}') == 1
        assert await host.stop() == 0
    assert not running(pid)


async def test_the_attach_port_balances_each_call_over_two_replicas(
        sample_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Two hosts as two pods: A at 127.0.0.1 and B at 127.0.0.2 on the same local port, A's
    peers listing both (like the headless Service); A's attach port spreads the calls of
    one connection over both plugins, A's own without the hop through its local port."""
    port = free_port()
    b = await start_host(sample_dirs["go"], tmp_path / "b",
                         ["--grpc-bind", "127.0.0.2", "--grpc-port", str(port)])
    try:
        peers = f"127.0.0.1:{port},127.0.0.2:{port}"
        async with running_host(sample_dirs["go"], tmp_path / "a", [
                "--grpc-port", str(port), "--attach-port", "0", "--peers", peers,
                "--pod-ip", "127.0.0.1"]) as a, PluginClient(a.attach_target) as client:
            served = 'sample_go_queries_total{outcome="ok",query_type="table"}'
            deadline = asyncio.get_running_loop().time() + 20
            while metric(await host_metrics(b), served) == 0:  # until B's connection is up
                assert asyncio.get_running_loop().time() < deadline, "B never got a call"
                await client.query_data(query("go"))
            before = [metric(await host_metrics(h), served) for h in (a, b)]
            for _ in range(100):
                reply = await client.query_data(query("go"))
                assert reply.responses["A"].status == 200
            after = [metric(await host_metrics(h), served) for h in (a, b)]
            split = [x - y for x, y in zip(after, before, strict=True)]
            assert sum(split) == 100
            assert min(split) >= 35, f"calls per replica {split}: want about even"
            text = await host_metrics(a)
            assert metric(text, 'plugin_operator_front_peers{state="known"}') == 2
            assert metric(text, 'plugin_operator_front_balanced_calls_total{to="peer"}') >= 35
    finally:
        await b.stop()


async def test_sigterm_drains_then_stops_the_plugin(sample_dirs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    host = await start_host(sample_dirs["go"], tmp_path, ["--drain-delay", "2"])
    try:
        async with PluginClient(host.grpc_target) as client:
            assert await client.health()
            host.process.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 1.5
            while await client.health():  # the readiness probe fails at once...
                assert loop.time() < deadline, "health still SERVING while draining"
                await asyncio.sleep(0.05)
            reply = await client.query_data(query("go"))  # ...while calls are still served
            assert reply.responses["A"].status == 200
            assert running(host.plugin_pid)
        assert await asyncio.wait_for(host.process.wait(), 30) == 0
        assert not running(host.plugin_pid)
        assert host.front_pid is not None
        assert not running(host.front_pid)
    finally:
        if host.process.returncode is None:
            host.process.kill()


async def test_a_front_that_dies_fails_the_host(sample_dirs: dict[str, Path],
                                                tmp_path: Path) -> None:
    host = await start_host(PYTHON_SAMPLE, tmp_path)
    assert host.front_pid is not None
    os.kill(host.front_pid, signal.SIGKILL)
    code = await asyncio.wait_for(host.process.wait(), 30)
    assert code == 128 + signal.SIGKILL
    message = host.termination_log.read_text()
    assert message.startswith("plugin-front (pid ")
    assert "killed by SIGKILL; the plugin was stopped" in message
    assert not running(host.plugin_pid)


async def test_a_missing_front_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HostStartError) as failure:
        await start_host(PYTHON_SAMPLE, tmp_path, env={FRONT_ENV: str(tmp_path / "nowhere")})
    assert "exit 2" in str(failure.value)
    message = (tmp_path / "termination-log").read_text()
    assert "plugin-front not found" in message
    assert "hack/build-front.sh" in message
