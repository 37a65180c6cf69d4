"""Start ``plugin-operator gateway`` as a subprocess on a free loopback port: for tests,
benchmarks and trying it by hand. Also builds static worlds that route to given endpoints."""

# `timeout` parameters are bounded waits, not ad-hoc limits.
# ruff: noqa: ASYNC109, ASYNC240

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc.aio
import yaml
from aiohttp.test_utils import TestClient, TestServer

from plugin_operator.gateway.access import Gatekeeper
from plugin_operator.gateway.routing import Kind, RoutingTable
from plugin_operator.gateway.server import Gateway, GatewayConfig
from plugin_operator.gateway.tracing import Tracing
from plugin_operator.models import naming
from plugin_operator.models.resources import API_VERSION
from plugin_operator.protocol.stubs import backend_pb2_grpc

GATEWAY_POD = "gateway-0"


@dataclass
class RunningGateway:
    process: asyncio.subprocess.Process
    port: int
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self, timeout: float = 30.0) -> int:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)


def plugin_object(name: str, plugin_id: str, namespace: str = "default", *,
                  mode: str = "Sidecar", app: Mapping[str, Any] | None = None,
                  status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"pluginId": plugin_id, "version": "1.0.0", "mode": mode,
                            "source": {"url": f"http://127.0.0.1/{plugin_id}.zip"}}
    if app:
        spec["app"] = dict(app)
    return {"apiVersion": API_VERSION, "kind": "Plugin",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
            "status": dict(status or {"phase": "Running"})}


def datasource_object(name: str, uid: str, plugin_name: str, namespace: str = "default", *,
                      json_data: Mapping[str, Any] | None = None,
                      secure_from: Mapping[str, tuple[str, str]] | None = None,
                      settings_version: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {"pluginRef": {"name": plugin_name}, "uid": uid,
                            "jsonData": dict(json_data or {})}
    if secure_from:
        spec["secureJsonDataFrom"] = {k: {"secretKeyRef": {"name": s, "key": key}}
                                      for k, (s, key) in secure_from.items()}
    return {"apiVersion": API_VERSION, "kind": "DataSourceInstance",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
            "status": {"settingsVersion": settings_version}}


def secret_object(name: str, values: Mapping[str, str],
                  namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


def gateway_pod_object(sidecar_ports: Mapping[str, int],
                       namespace: str = "default") -> dict[str, Any]:
    """The gateway's own pod carrying the given plugins as ready sidecars."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": GATEWAY_POD, "namespace": namespace,
                         "annotations": {naming.ANNOTATION_SIDECARS: json.dumps(
                             dict(sidecar_ports))}},
            "status": {"containerStatuses": [
                {"name": naming.sidecar_container_name(n), "ready": True}
                for n in sidecar_ports]}}


def write_world(path: Path, objects: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all([dict(o) for o in objects]))
    return path


@contextlib.asynccontextmanager
async def running_gateway(world: Path | None, work_dir: Path, args: Sequence[str] = (), *,
                          timeout: float = 30.0) -> AsyncIterator[RunningGateway]:
    """A gateway on 127.0.0.1 serving ``world`` anonymously, or with ``world`` None whatever
    ``args`` say (e.g. ``--kubeconfig``); stopped (SIGTERM) on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ports_file = work_dir / "gateway-ports.json"
    ports_file.unlink(missing_ok=True)
    output = work_dir / "gateway.log"
    command = [sys.executable, "-m", "plugin_operator.cli", "gateway", "--bind", "127.0.0.1",
               "--port", "0", "--ports-file", str(ports_file), "--pod-name", GATEWAY_POD,
               "--asset-cache", str(work_dir / "assets"), *args]
    if world is not None:
        command += ["--static-world", str(world), "--anonymous"]
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(*command, stdout=sink, stderr=sink,
                                                       env=dict(os.environ))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not ports_file.exists():
            if process.returncode is not None or loop.time() > deadline:
                raise RuntimeError(f"gateway did not start (exit {process.returncode}):\n"
                                   f"{output.read_text()[-4000:]}")
            await asyncio.sleep(0.05)
        gateway = RunningGateway(process, json.loads(ports_file.read_text())["http"], output)
        yield gateway
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def in_process_gateway(data_servicer: Any, work_dir: Path,
                             tracing: Tracing | None = None) -> AsyncIterator[TestClient]:
    """A Gateway in this process (an aiohttp TestClient in front of it) whose one
    datasource, uid ``uid-1``, is served by ``data_servicer`` (a pluginv2 Data servicer) on a
    loopback gRPC port, as a Sidecar-mode Plugin of the gateway's own pod."""
    server = grpc.aio.server()
    backend_pb2_grpc.add_DataServicer_to_server(data_servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Sidecar"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-1", "td"))
    table.apply(Kind.GATEWAY_POD, gateway_pod_object({"td": port}))
    gateway = Gateway(table, Gatekeeper(None, None, anonymous=True),
                      GatewayConfig(asset_cache_dir=work_dir), tracing=tracing)
    gateway.synced = True
    client = TestClient(TestServer(gateway.app()))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await gateway.upstream.close()
        await server.stop(None)
