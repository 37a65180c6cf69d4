"""Grafana attached to a plugin server elsewhere, through the plugin's own executable.

Grafana's side is grafana-client (tests/compat-go): hashicorp/go-plugin launching the
unmodified executable with Grafana's handshake and environment. The executable gets
``GF_PLUGIN_GRPC_ADDRESS_<ID>`` the way an unmodified Grafana would hand it over: as the key
``grpc_address_<id>`` of the ``[plugin.<id>]`` ini section. With an address, the executable
(the Python sample through our SDK, the Go sample through Grafana's SDK) only prints
go-plugin's handshake for that address, and every call goes to a separately running
``plugin-operator host``. The evidence that the remote answered: go-plugin dialled the
remote's address, every call's peer is that address, the locator process holds no socket at
all, the remote's own query counter moves while the client runs (read from the remote's
/metrics), and for the Python sample the serving pid is the remote plugin's. With the
variable empty, the same executable serves the calls itself, and the remote sees nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.host_launcher import RunningHost, running_host
from tests.support.samples import build_sample_go

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TESTDATA = REPO / "plugins" / "testdata-python"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON_ID = "plugin-operator-testdata-datasource"
GO_ID = "plugin-operator-sample-go-datasource"
HOUR = {"fromMs": 1_700_000_000_000, "toMs": 1_700_003_600_000}


@dataclass(frozen=True)
class Sample:
    plugin_id: str
    plugin_dir: Path  # what `plugin-operator host` serves
    executable: Path  # what Grafana launches
    # Python's launcher needs a python3 on PATH: Grafana before 12.4 forwards its own
    # environment. The Go binary needs nothing, so it runs as Grafana 12.4 runs it.
    grafana_version: str
    datasource: dict[str, Any]
    calls: list[dict[str, Any]]
    # The remote's counter of table queries, in its /metrics.
    query_metric: str

    @property
    def address_setting(self) -> str:
        """The [plugin.<id>] key whose GF_PLUGIN_<KEY> is the Go SDK's variable."""
        return "grpc_address_" + self.plugin_id.replace("-", "_")


def python_sample() -> Sample:
    return Sample(
        PYTHON_ID, TESTDATA, TESTDATA / "gpx_testdata_python_linux_amd64", "12.3.0",
        {"id": 1, "uid": "ds1", "name": "testdata", "lastUpdatedMS": 1,
         "jsonData": {"endpoint": "https://example.invalid"},
         "secureJsonData": {"apiKey": "secret"}},
        [{"call": "health"},
         {"call": "query", "format": "json", **HOUR,
          "queries": [{"refId": "A", "queryType": "table"}]},
         {"call": "resource", "path": "whoami", "answeredBy": "pid"},
         {"call": "resource", "path": "stream"},
         {"call": "stream", "path": "counter", "data": {"count": 3, "interval": 0.01},
          "packets": 2}],
        'testdata_queries_total{scenario="table"}')


def go_sample(dist: Path) -> Sample:
    return Sample(
        GO_ID, dist, dist / "gpx_sample_go_linux_amd64", "12.4.0",
        {"id": 1, "uid": "ds1", "name": "sample", "lastUpdatedMS": 1,
         "jsonData": {"expectedApiKey": "s3cret"}, "secureJsonData": {"apiKey": "s3cret"}},
        [{"call": "health"},
         {"call": "query", "format": "json", **HOUR,
          "queries": [{"refId": "A", "queryType": "table"}]},
         {"call": "resource", "path": "stream?chunks=3"},
         {"call": "stream", "path": "ticks", "data": {"intervalMs": 20}, "packets": 2}],
        'sample_go_queries_total{outcome="ok",query_type="table"}')


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    """The Go sample (SAMPLE_GO_DIST) and the static grafana-client (GRAFANA_CLIENT)."""
    return build_sample_go("sample-go", "compat-go")


@pytest.fixture(scope="module")
def host_env() -> dict[str, str]:
    """What `plugin-operator host` needs outside our image: the plugin-front binary."""
    if os.environ.get("PLUGIN_OPERATOR_FRONT"):
        return {}
    front = subprocess.run([str(REPO / "hack" / "build-front.sh")], capture_output=True,
                           text=True, timeout=1800, check=False)
    assert front.returncode == 0, f"hack/build-front.sh failed:\n{front.stderr}"
    return {"PLUGIN_OPERATOR_FRONT": front.stdout.strip().splitlines()[-1]}


@pytest.fixture(params=["python", "go"])
def sample(request: pytest.FixtureRequest, built: dict[str, Path]) -> Sample:
    return python_sample() if request.param == "python" else go_sample(built["SAMPLE_GO_DIST"])


def client_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


async def run_client(client: Path, sample: Sample, address: str, *extra: str,
                     calls: list[dict[str, Any]] | None = None,
                     watch: Callable[[], Awaitable[bool]] | None = None
                     ) -> tuple[dict[str, Any], bool]:
    """Run grafana-client on ``sample``'s executable with ``address`` in the plugin's
    settings; meanwhile poll ``watch`` until it holds. Returns (summary, watch held)."""
    plan = {"pluginId": sample.plugin_id, "datasource": sample.datasource,
            "calls": sample.calls if calls is None else calls}
    process = await asyncio.create_subprocess_exec(
        str(client), "--plugin", str(sample.executable), "--plan", "-", "--peers",
        "--grafana-version", sample.grafana_version,
        "--plugin-setting", f"{sample.address_setting}={address}", *extra,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=client_env())
    communicate = asyncio.ensure_future(process.communicate(json.dumps(plan).encode()))
    held = False
    while watch is not None and not held and not communicate.done():
        held = await watch()
        if not held:
            await asyncio.sleep(0.1)
    out, err = await asyncio.wait_for(communicate, 120)
    assert process.returncode == 0, f"grafana-client failed:\n{err.decode()[-4000:]}"
    summary: dict[str, Any] = json.loads(out)
    return summary, held


async def remote_counter(remote: RunningHost, metric: str) -> float:
    """The value of ``metric`` in the remote's /metrics (0 when absent or unreachable)."""
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(remote.http_url + "/metrics",
                         timeout=aiohttp.ClientTimeout(total=5)) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0.0
    for line in text.splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[-1])
    return 0.0


def assert_calls_answered(results: list[dict[str, Any]]) -> None:
    health, queried, *rest = results
    assert health["status"] == "OK", health
    assert queried["responses"]["A"]["status"] == 200, queried
    assert queried["responses"]["A"]["frames"], queried
    resources = [r for r in rest if r["call"] == "resource"]
    assert all(r.get("status") == 200 and "error" not in r for r in resources), resources
    (streamed,) = [r for r in rest if r["call"] == "stream"]
    assert len(streamed["packets"]) == 2, streamed


async def test_an_empty_variable_serves_in_process_and_an_address_locates_the_remote(
        sample: Sample, built: dict[str, Path], host_env: dict[str, str],
        tmp_path: Path) -> None:
    client = built["GRAFANA_CLIENT"]
    async with running_host(sample.plugin_dir, tmp_path / "remote", env=host_env) as remote:
        # 1. The variable is there but empty: the executable serves the calls itself.
        own, _ = await run_client(client, sample, "")
        assert_calls_answered(own["results"])
        launched = own["launched"]
        assert launched["network"] == "unix", launched
        assert launched["openSockets"] >= 1, "serving takes a listener and a connection"
        peers = {r.get("peer") for r in own["results"]}
        assert remote.grpc_target not in peers
        if sample.plugin_id == PYTHON_ID:
            (whoami,) = [r for r in own["results"] if r.get("answeredBy")]
            assert whoami["answeredBy"] == str(launched["pid"])
        assert await remote_counter(remote, sample.query_metric) == 0
        # Grafana's Kill stopped it the go-plugin way: Shutdown, and it exited by itself.
        assert own["kill"]["exited"] is True
        assert own["kill"].get("signal") is None, own["kill"]

        # 2. With the remote's address, the executable only locates the remote.
        async def remote_served() -> bool:
            return await remote_counter(remote, sample.query_metric) > 0

        located, remote_saw_queries = await run_client(
            client, sample, remote.grpc_target, "--duration", "3s", "--interval", "200ms",
            watch=remote_served)
        # Grafana's Kill sent go-plugin's Shutdown to the remote, which refuses it: the
        # remote keeps serving (see test_grafanas_kill_sends_shutdown_to_the_located_server).
        await asyncio.sleep(0.5)
        assert remote.process.returncode is None, "the remote stopped on Grafana's Kill"
        again, _ = await run_client(client, sample, remote.grpc_target)
    assert remote_saw_queries, "the remote's query counter never moved"
    assert_calls_answered(again["results"])
    launched = located["launched"]
    assert (launched["network"], launched["address"]) == ("tcp", remote.grpc_target)
    assert launched["openSockets"] == 0, "a locator neither listens nor connects"
    assert f"GF_PLUGIN_GRPC_ADDRESS_{sample.plugin_id.upper().replace('-', '_')}" in \
        launched["envNames"]
    # Grafana 12.4 skips the host environment; the Go binary still ran, without HOME/PATH.
    forwarded = sample.grafana_version < "12.4"
    assert launched["hostEnvForwarded"] is forwarded
    assert ("PATH" in launched["envNames"]) is forwarded
    repeat = located["repeat"]
    assert repeat["rounds"] >= 3
    for stats in repeat["calls"]:
        assert stats["failed"] == 0, stats
        assert set(stats.get("peers") or {}) <= {remote.grpc_target}, stats
    if sample.plugin_id == PYTHON_ID:
        (whoami,) = [s for s in repeat["calls"] if s.get("answeredBy")]
        assert set(whoami["answeredBy"]) == {str(remote.plugin_pid)}
    # The locator ignores go-plugin's Shutdown (it went to the remote), so Grafana's Kill
    # ends it with SIGKILL after its 2 s grace, as it does the Go SDK's locator.
    assert located["plugin"] == {"exited": False, "exitCode": None}
    assert located["kill"]["signal"] == "killed", located["kill"]
    assert located["kill"]["durationMs"] >= 1900, located["kill"]


def test_the_go_sdk_also_treats_an_empty_variable_as_none(built: dict[str, Path]) -> None:
    """Straight from the Go SDK: the empty variable is reported and ignored."""
    sample = go_sample(built["SAMPLE_GO_DIST"])
    plan = {"pluginId": GO_ID, "datasource": sample.datasource, "calls": [{"call": "health"}]}
    done = subprocess.run(
        [str(built["GRAFANA_CLIENT"]), "--plugin", str(sample.executable), "--plan", "-",
         "--grafana-version", "12.4.0", "--plugin-setting", f"{sample.address_setting}=",
         # go-plugin logs a plain stderr line (the SDK's log.Printf) at debug level.
         "--log-level", "debug"],
        input=json.dumps(plan), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["launched"]["network"] == "unix"
    assert summary["results"][0]["status"] == "OK"
    assert "address is empty" in done.stderr


async def test_grafanas_kill_sends_shutdown_to_the_located_server(
        built: dict[str, Path], tmp_path: Path) -> None:
    """Grafana stops a plugin with go-plugin's Kill, which calls GRPCController/Shutdown on
    the connection: through a locator that is the remote server. A remote that honours
    Shutdown (here the Python sample served over TCP the go-plugin way) stops whenever any
    Grafana stops or restarts the plugin; a shared backend must refuse it (UNIMPLEMENTED,
    as the Go SDK's standalone server and go-plugin clients tolerate)."""
    env = {**os.environ, "grafana_plugin_type": "datasource", "PLUGIN_PROTOCOL_VERSIONS": "2",
           "PLUGIN_OPERATOR_SDK_NETWORK": "tcp", "PLUGIN_MIN_PORT": "0", "PLUGIN_MAX_PORT": "0",
           "PLUGIN_UNIX_SOCKET_DIR": str(tmp_path)}
    remote = await asyncio.create_subprocess_exec(
        sys.executable, str(TESTDATA / "gpx_testdata_python_linux_amd64"), env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert remote.stdout is not None
        line = (await asyncio.wait_for(remote.stdout.readline(), 60)).decode()
        match = re.fullmatch(r"1\|2\|tcp\|(127\.0\.0\.1:\d+)\|grpc\|\n", line)
        assert match, line
        sample = go_sample(built["SAMPLE_GO_DIST"])
        summary, _ = await run_client(
            built["GRAFANA_CLIENT"], sample, match.group(1),
            calls=[{"call": "resource", "path": "whoami", "answeredBy": "pid"}])
        # The Go SDK's locator handed the Python remote's address to go-plugin.
        assert summary["results"][0]["answeredBy"] == str(remote.pid)
        assert summary["launched"]["openSockets"] == 0
        code = await asyncio.wait_for(remote.wait(), 10)
        assert code == 0, "Shutdown stopped the remote"
    finally:
        if remote.returncode is None:
            remote.kill()
            await remote.wait()


async def start_plain_server(port: int, tmp_path: Path) -> asyncio.subprocess.Process:
    """The Python sample serving go-plugin's protocol on 127.0.0.1:port."""
    env = {**os.environ, "grafana_plugin_type": "datasource", "PLUGIN_PROTOCOL_VERSIONS": "2",
           "PLUGIN_OPERATOR_SDK_NETWORK": "tcp", "PLUGIN_MIN_PORT": str(port),
           "PLUGIN_MAX_PORT": str(port), "PLUGIN_UNIX_SOCKET_DIR": str(tmp_path)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(TESTDATA / "gpx_testdata_python_linux_amd64"), env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert server.stdout is not None
    line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
    assert line == f"1|2|tcp|127.0.0.1:{port}|grpc|\n", line
    return server


async def test_repeat_mode_measures_an_outage_of_the_located_server(
        built: dict[str, Path], tmp_path: Path) -> None:
    """The recovery view: Grafana's connection (through the Go SDK's locator) keeps the
    address it resolved once; the remote dies, comes back on that address, and calls
    succeed again. grafana-client's repeat mode counts the failures and who answered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = await start_plain_server(port, tmp_path)
    second: asyncio.subprocess.Process | None = None
    sample = go_sample(built["SAMPLE_GO_DIST"])
    run = asyncio.ensure_future(run_client(
        built["GRAFANA_CLIENT"], sample, f"127.0.0.1:{port}", "--duration", "8s",
        "--interval", "100ms", "--call-timeout", "1s",
        calls=[{"call": "resource", "path": "whoami", "answeredBy": "pid"}]))
    try:
        await asyncio.sleep(1.5)
        first.kill()
        await first.wait()
        await asyncio.sleep(1.0)
        second = await start_plain_server(port, tmp_path)
        summary, _ = await run
    finally:
        for server in (first, second):
            if server is not None and server.returncode is None:
                server.kill()
                await server.wait()
    (stats,) = summary["repeat"]["calls"]
    assert stats["failed"] >= 1, stats
    assert stats["longestFailureStreak"] >= 1, stats
    assert stats["longestFailureStreakMs"] >= 500, stats
    assert set(stats["errors"]) <= {"Unavailable", "DeadlineExceeded"}, stats
    assert second is not None
    assert set(stats["answeredBy"]) == {str(first.pid), str(second.pid)}, stats
    assert summary["results"][0]["answeredBy"] == str(second.pid), "it recovered"
    assert set(stats["peers"]) == {f"127.0.0.1:{port}"}, stats
