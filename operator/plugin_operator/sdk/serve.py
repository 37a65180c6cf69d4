"""``serve()``: run a plugin process the way Grafana expects (go-plugin handshake over gRPC).

Checks the magic cookie, negotiates the protocol version, listens on a unix socket (or
TCP), registers pluginv2 plus go-plugin's health/controller/stdio services, prints the
handshake line, and serves until Grafana calls Shutdown or the process gets SIGTERM.
With ``GF_PLUGIN_GRPC_ADDRESS_<ID>`` set, ``serve()`` only points Grafana elsewhere
(:mod:`plugin_operator.sdk.locator`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry

from plugin_operator.protocol.stubs import (
    backend_pb2_grpc,
    goplugin_pb2,
    goplugin_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
)
from plugin_operator.sdk.handlers import StreamHandler
from plugin_operator.sdk.locator import locator_address, plugin_id_near, run_locator
from plugin_operator.sdk.log import configure_logging
from plugin_operator.sdk.servicers import (
    DataServicer,
    DiagnosticsServicer,
    ResourceServicer,
    StreamServicer,
)

log = logging.getLogger("plugin_operator.sdk")

MAGIC_COOKIE_KEY = "grafana_plugin_type"
MAGIC_COOKIE_VALUE = "datasource"
CORE_PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (2,)
# Not Grafana's: lets a test or an operator choose TCP instead of a unix socket.
NETWORK_ENV = "PLUGIN_OPERATOR_SDK_NETWORK"
# The Go SDK server accepts at most 16 MiB per incoming message.
MAX_RECEIVE_BYTES = 16 * 1024 * 1024

NOT_A_PLUGIN_MESSAGE = (
    "This binary is a plugin. These are not meant to be executed directly.\n"
    "Please execute the program that consumes these plugins, which will\n"
    "load any plugins automatically (Grafana, or `plugin-operator host <plugin-dir>`).\n"
)


class HandshakeError(RuntimeError):
    """The environment does not allow a go-plugin handshake."""


@dataclass(frozen=True)
class Listener:
    network: str  # "unix" or "tcp"
    address: str  # socket path or 127.0.0.1:port


def negotiate_version(env: Mapping[str, str]) -> int:
    """The highest version both sides speak; our lowest if none (the host then rejects)."""
    offered = set()
    for item in env.get("PLUGIN_PROTOCOL_VERSIONS", "").split(","):
        item = item.strip()
        if item.isdigit():
            offered.add(int(item))
    for version in sorted(SUPPORTED_VERSIONS, reverse=True):
        if version in offered:
            return version
    return min(SUPPORTED_VERSIONS)


def handshake_line(version: int, listener: Listener) -> str:
    """``1|2|unix|/tmp/plugin123|grpc|`` (six fields, empty cert, like the Go server)."""
    return f"{CORE_PROTOCOL_VERSION}|{version}|{listener.network}|{listener.address}|grpc|"


def check_cookie(env: Mapping[str, str]) -> bool:
    return env.get(MAGIC_COOKIE_KEY) == MAGIC_COOKIE_VALUE


class _HealthServicer(health_pb2_grpc.HealthServicer):
    SERVING = health_pb2.HealthCheckResponse.SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext[Any, Any]
                    ) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", "plugin"):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service}")
        return health_pb2.HealthCheckResponse(status=self.SERVING)

    async def Watch(self, request: health_pb2.HealthCheckRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext[Any, Any]
                    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        yield health_pb2.HealthCheckResponse(status=self.SERVING)
        await asyncio.Event().wait()


class _ControllerServicer(goplugin_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    async def Shutdown(self, request: goplugin_pb2.Empty,  # noqa: N802
                       context: grpc.aio.ServicerContext[Any, Any]) -> goplugin_pb2.Empty:
        log.debug("shutdown requested by the host")
        self.stop.set()
        return goplugin_pb2.Empty()


class _StdioServicer(goplugin_pb2_grpc.GRPCStdioServicer):
    """Python output goes straight to the real stdout/stderr, which hosts drain; the stream
    only stays open so go-plugin clients see a working StreamStdio."""

    async def StreamStdio(self, request: Any,  # noqa: N802
                          context: grpc.aio.ServicerContext[Any, Any]
                          ) -> AsyncIterator[goplugin_pb2.StdioData]:
        await asyncio.Event().wait()
        yield goplugin_pb2.StdioData()  # pragma: no cover - never reached


def _bind(server: grpc.aio.Server, env: Mapping[str, str]) -> Listener:
    network = env.get(NETWORK_ENV, "unix")
    if network == "unix":
        directory = env.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
        # Like go-plugin: a fresh temp name, then a socket at that path.
        fd, path = tempfile.mkstemp(prefix="plugin", dir=directory)
        os.close(fd)
        os.unlink(path)
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise HandshakeError(f"cannot listen on unix socket {path}")
        return Listener("unix", path)
    if network != "tcp":
        raise HandshakeError(f"{NETWORK_ENV}={network!r}: use unix or tcp")
    low = int(env.get("PLUGIN_MIN_PORT") or 0)
    high = int(env.get("PLUGIN_MAX_PORT") or 0)
    if low > high:
        raise HandshakeError(f"PLUGIN_MIN_PORT {low} is above PLUGIN_MAX_PORT {high}")
    for port in range(low, high + 1):
        with contextlib.suppress(RuntimeError):
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
            if bound:
                return Listener("tcp", f"127.0.0.1:{bound}")
    raise HandshakeError(f"no free TCP port between {low} and {high}")


async def serve_async(handlers: object, *, registry: CollectorRegistry = REGISTRY,
                      env: Mapping[str, str] | None = None) -> int:
    """Serve ``handlers`` until Shutdown or SIGTERM; returns the process exit code."""
    env = os.environ if env is None else env
    if not check_cookie(env):
        sys.stderr.write(NOT_A_PLUGIN_MESSAGE)
        sys.stderr.flush()
        return 1
    version = negotiate_version(env)
    stop = asyncio.Event()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                                      ("grpc.max_send_message_length", -1)])
    backend_pb2_grpc.add_DataServicer_to_server(DataServicer(handlers), server)
    backend_pb2_grpc.add_ResourceServicer_to_server(ResourceServicer(handlers), server)
    backend_pb2_grpc.add_DiagnosticsServicer_to_server(
        DiagnosticsServicer(handlers, registry), server)
    if isinstance(handlers, StreamHandler):
        backend_pb2_grpc.add_StreamServicer_to_server(StreamServicer(handlers), server)
    health_pb2_grpc.add_HealthServicer_to_server(_HealthServicer(), server)
    goplugin_pb2_grpc.add_GRPCControllerServicer_to_server(_ControllerServicer(stop), server)
    goplugin_pb2_grpc.add_GRPCStdioServicer_to_server(_StdioServicer(), server)
    try:
        listener = _bind(server, env)
    except HandshakeError as exc:
        sys.stderr.write(f"plugin failed to start: {exc}\n")
        return 1
    await server.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Go plugins count SIGINT and carry on: Ctrl-C in Grafana's terminal must not kill them.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    sys.stdout.write(handshake_line(version, listener) + "\n")
    sys.stdout.flush()
    log.info("plugin serving", extra={"network": listener.network,
                                       "address": listener.address})
    try:
        await stop.wait()
    finally:
        await server.stop(grace=0.5)
        dispose = getattr(handlers, "dispose", None)
        if dispose is not None:
            result = dispose()
            if asyncio.iscoroutine(result):
                await result
        if listener.network == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listener.address)
    return 0


def serve(handlers: object, *, registry: CollectorRegistry = REGISTRY,
          log_level: int = logging.INFO, plugin_id: str | None = None) -> None:
    """Run a plugin process: logs as hclog JSON on stderr, then serve until told to stop.

    Like the Go SDK's ``Manage``, a non-empty ``GF_PLUGIN_GRPC_ADDRESS_<ID>`` turns the
    process into a locator for a plugin server elsewhere (see :mod:`.locator`) instead.
    ``plugin_id`` defaults to the id in the plugin.json beside the launched executable.
    """
    configure_logging(log_level)
    plugin_id = plugin_id or plugin_id_near(sys.argv[0])
    address = locator_address(plugin_id, os.environ) if plugin_id else None
    if address is not None:
        sys.exit(run_locator(address))
    sys.exit(asyncio.run(serve_async(handlers, registry=registry)))
