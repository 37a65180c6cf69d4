"""An async client for a plugin's gRPC services (pluginv2, go-plugin's, and health).

Transport only: it turns models into messages, calls, maps errors to
:class:`~plugin_operator.protocol.errors.PluginError` and decodes frames by
``DataResponse.format``. Retries, routing and pooling belong to the callers.
"""

# `timeout` parameters are gRPC deadlines and bounded waits passed down, not ad-hoc limits.
# ruff: noqa: ASYNC109

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from plugin_operator.protocol import convert
from plugin_operator.protocol.errors import PluginError, error_from_rpc
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CallResourceResponse,
    CheckHealthRequest,
    CheckHealthResult,
    CollectMetricsRequest,
    CollectMetricsResult,
    DataChunk,
    QueryDataRequest,
    QueryDataResponse,
    StreamRequest,
    StreamResponse,
)
from plugin_operator.protocol.stubs import (
    backend_pb2,
    backend_pb2_grpc,
    goplugin_pb2,
    goplugin_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
)

# Grafana's client allows MaxInt32 in both directions; so do we.
MAX_MESSAGE_BYTES = 2**31 - 1
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
TENANT_METADATA_KEY = "tenantid"
T = TypeVar("T")


class _Default(enum.Enum):
    TOKEN = 0


DEFAULT = _Default.TOKEN
Timeout = float | None | _Default


class StdioChannel(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


def grpc_target(network: str, address: str) -> str:
    """The grpc target string for a go-plugin handshake address."""
    if network == "unix":
        return f"unix:{address}"
    if network == "tcp":
        return address
    raise ValueError(f"unsupported network {network!r}; expected unix or tcp")


class PluginClient:
    """Typed calls for every RPC of a plugin reachable at ``target``.

    ``target`` is a grpc target (``host:port`` or ``unix:/path``). Use as an async context
    manager or call :meth:`close`. ``timeout`` is the default deadline in seconds for
    unary calls (None: no deadline); each call can override it.
    """

    def __init__(self, target: str, *, timeout: float | None = 30.0, tenant_id: str = "",
                 channel: grpc.aio.Channel | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self._metadata = ((TENANT_METADATA_KEY, tenant_id),) if tenant_id else ()
        self._channel = channel or grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._data = backend_pb2_grpc.DataStub(self._channel)
        self._resource = backend_pb2_grpc.ResourceStub(self._channel)
        self._diagnostics = backend_pb2_grpc.DiagnosticsStub(self._channel)
        self._stream = backend_pb2_grpc.StreamStub(self._channel)
        self._admission = backend_pb2_grpc.AdmissionControlStub(self._channel)
        self._conversion = backend_pb2_grpc.ResourceConversionStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._controller = goplugin_pb2_grpc.GRPCControllerStub(self._channel)
        self._stdio = goplugin_pb2_grpc.GRPCStdioStub(self._channel)

    async def __aenter__(self) -> PluginClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the channel is connected (raises TimeoutError)."""
        import asyncio

        async with asyncio.timeout(timeout):
            await self._channel.channel_ready()

    def _deadline(self, timeout: Timeout) -> float | None:
        return self.timeout if isinstance(timeout, _Default) else timeout

    async def _unary(self, method: str, call: Callable[..., Awaitable[T]], request: object,
                     timeout: float | None) -> T:
        try:
            return await call(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, method) from None

    async def _stream_call(self, method: str, call: Callable[..., Any],
                           request: object, timeout: float | None) -> AsyncIterator[Any]:
        stream = call(request, timeout=timeout, metadata=self._metadata)
        try:
            async for message in stream:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, method) from None
        finally:
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()

    # ---- pluginv2.Data ----

    async def query_data(self, request: QueryDataRequest, *,
                         timeout: Timeout = DEFAULT) -> QueryDataResponse:
        reply = await self._unary("QueryData", self._data.QueryData,
                                  convert.query_data_request_to_proto(request),
                                  self._deadline(timeout))
        return convert.query_data_response_from_proto(reply)

    async def query_chunked_data(self, request: QueryDataRequest, *,
                                 timeout: float | None = None) -> AsyncIterator[DataChunk]:
        async for message in self._stream_call(
                "QueryChunkedData", self._data.QueryChunkedData,
                convert.query_chunked_request_to_proto(request), timeout):
            yield convert.data_chunk_from_proto(message)

    # ---- pluginv2.Resource ----

    async def call_resource_stream(self, request: CallResourceRequest, *,
                                   timeout: float | None = None
                                   ) -> AsyncIterator[CallResourceResponse]:
        """Every CallResourceResponse message as the plugin sends it."""
        async for message in self._stream_call(
                "CallResource", self._resource.CallResource,
                convert.call_resource_request_to_proto(request), timeout):
            yield convert.call_resource_response_from_proto(message)

    async def call_resource(self, request: CallResourceRequest, *,
                            timeout: Timeout = DEFAULT
                            ) -> CallResourceResponse:
        """The whole response: status and headers of the first message, all bodies joined."""
        first: CallResourceResponse | None = None
        bodies = []
        async for part in self.call_resource_stream(request, timeout=self._deadline(timeout)):
            first = first or part
            bodies.append(part.body)
        if first is None:
            raise PluginError("received empty resource response", method="CallResource")
        return CallResourceResponse(first.status, first.headers, b"".join(bodies))

    # ---- pluginv2.Diagnostics ----

    async def check_health(self, request: CheckHealthRequest, *,
                           timeout: Timeout = DEFAULT) -> CheckHealthResult:
        reply = await self._unary("CheckHealth", self._diagnostics.CheckHealth,
                                  convert.check_health_request_to_proto(request),
                                  self._deadline(timeout))
        return convert.check_health_result_from_proto(reply)

    async def collect_metrics(self, request: CollectMetricsRequest, *,
                              timeout: Timeout = DEFAULT
                              ) -> CollectMetricsResult:
        reply = await self._unary("CollectMetrics", self._diagnostics.CollectMetrics,
                                  convert.collect_metrics_request_to_proto(request),
                                  self._deadline(timeout))
        return convert.collect_metrics_result_from_proto(reply)

    # ---- pluginv2.Stream ----

    async def subscribe_stream(self, request: StreamRequest, *,
                               timeout: Timeout = DEFAULT) -> StreamResponse:
        reply = await self._unary("SubscribeStream", self._stream.SubscribeStream,
                                  convert.subscribe_request_to_proto(request),
                                  self._deadline(timeout))
        return convert.stream_response_from_proto(reply)

    async def publish_stream(self, request: StreamRequest, *,
                             timeout: Timeout = DEFAULT) -> StreamResponse:
        reply = await self._unary("PublishStream", self._stream.PublishStream,
                                  convert.publish_request_to_proto(request),
                                  self._deadline(timeout))
        return convert.stream_response_from_proto(reply)

    async def run_stream(self, request: StreamRequest, *,
                         timeout: float | None = None) -> AsyncIterator[bytes]:
        """The packets' data; cancel by leaving the loop (Grafana cancels the RPC)."""
        async for packet in self._stream_call("RunStream", self._stream.RunStream,
                                              convert.run_stream_request_to_proto(request),
                                              timeout):
            yield packet.data

    # ---- pluginv2.AdmissionControl / ResourceConversion (experimental: raw messages) ----

    async def validate_admission(self, request: backend_pb2.AdmissionRequest, *,
                                 timeout: Timeout = DEFAULT
                                 ) -> backend_pb2.ValidationResponse:
        return await self._unary("ValidateAdmission", self._admission.ValidateAdmission,
                                 request, self._deadline(timeout))

    async def mutate_admission(self, request: backend_pb2.AdmissionRequest, *,
                               timeout: Timeout = DEFAULT
                               ) -> backend_pb2.MutationResponse:
        return await self._unary("MutateAdmission", self._admission.MutateAdmission,
                                 request, self._deadline(timeout))

    async def convert_objects(self, request: backend_pb2.ConversionRequest, *,
                              timeout: Timeout = DEFAULT
                              ) -> backend_pb2.ConversionResponse:
        return await self._unary("ConvertObjects", self._conversion.ConvertObjects,
                                 request, self._deadline(timeout))

    # ---- go-plugin and health ----

    async def health(self, service: str = "plugin", *,
                     timeout: Timeout = DEFAULT) -> bool:
        """True if grpc.health reports ``service`` SERVING (go-plugin's Ping)."""
        reply = await self._unary("Health/Check", self._health.Check,
                                  health_pb2.HealthCheckRequest(service=service),
                                  self._deadline(timeout))
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def shutdown(self, *, timeout: float | None = 2.0) -> None:
        """GRPCController.Shutdown: ask the plugin process to exit."""
        await self._unary("Shutdown", self._controller.Shutdown, goplugin_pb2.Empty(), timeout)

    async def stdio(self) -> AsyncIterator[tuple[StdioChannel, bytes]]:
        """GRPCStdio.StreamStdio: the plugin's mirrored stdout/stderr (call once)."""
        from google.protobuf import empty_pb2

        async for message in self._stream_call("StreamStdio", self._stdio.StreamStdio,
                                               empty_pb2.Empty(), None):
            if message.channel in (StdioChannel.STDOUT, StdioChannel.STDERR):
                yield StdioChannel(message.channel), message.data
