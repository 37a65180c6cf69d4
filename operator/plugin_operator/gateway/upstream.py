"""Calls to plugin backends: one pooled gRPC channel per endpoint, least-in-flight choice,
one retry on another ready endpoint of a call that never reached a plugin, per-call
deadlines."""

# `timeout` parameters are gRPC deadlines passed down, not ad-hoc limits.

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from plugin_operator.protocol import convert
from plugin_operator.protocol.client import CHANNEL_OPTIONS, PluginClient
from plugin_operator.protocol.errors import PluginError, error_from_rpc
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CallResourceResponse,
    FrameFormat,
    QueryDataRequest,
)
from plugin_operator.protocol.stubs import backend_pb2 as pb
from plugin_operator.protocol.stubs import backend_pb2_grpc

from .balancer import LoadTracker
from .errors import no_ready_backend
from .failures import never_reached_plugin
from .metrics import GatewayMetrics
from .tracing import Tracing

T = TypeVar("T")
_FORMATS = {f.value: f for f in FrameFormat}  # FrameFormat(n) costs an Enum call per answer


@dataclass
class RawDataResponse:
    """A DataResponse with its frames still encoded, so JSON frames pass straight through
    and Arrow frames can be handed on without re-encoding."""

    frames: list[bytes]
    error: str
    status: int
    error_source: str
    format: FrameFormat


class _Endpoint:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.client = PluginClient(target, channel=self.channel, timeout=None)
        self.data = backend_pb2_grpc.DataStub(self.channel)


class Upstream:
    def __init__(self, tracker: LoadTracker, metrics: GatewayMetrics, timeout: float,
                 tracing: Tracing | None = None) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.timeout = timeout
        self.tracing = tracing or Tracing()
        self._endpoints: dict[str, _Endpoint] = {}

    def _endpoint(self, target: str) -> _Endpoint:
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            endpoint = self._endpoints[target] = _Endpoint(target)
        return endpoint

    def client(self, target: str) -> PluginClient:
        return self._endpoint(target).client

    async def forget_except(self, alive: set[str]) -> None:
        """Close the channels of endpoints that are gone (pods deleted or not ready)."""
        for target in [t for t in self._endpoints if t not in alive]:
            if not self.tracker.endpoint_in_flight.get(target):
                await self._endpoints.pop(target).channel.close(None)

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.channel.close(None)
        self._endpoints.clear()

    async def call(self, plugin: str, method: str, endpoints: Sequence[str],
                   fn: Callable[[_Endpoint], Awaitable[T]]) -> T:
        """``fn`` on the least busy endpoint; once more on another one only if the call
        never reached a plugin (whatever the method: nothing happened yet). A backend that
        failed with the call in progress is not given a second victim (failures.py)."""
        tracker = self.tracker
        tried: list[str] = []
        while True:
            target = tracker.pick(endpoints, tried)
            if target is None:
                raise no_ready_backend(plugin)
            tried.append(target)
            started = time.perf_counter()
            tracker.call_started(target)
            try:
                return await fn(self._endpoint(target))
            except PluginError as exc:
                if not (len(tried) == 1 and never_reached_plugin(exc)
                        and tracker.pick(endpoints, tried) is not None):
                    raise
                self.metrics.retries.labels(plugin, method).inc()
            finally:
                tracker.call_ended(target)
                self.metrics.child(self.metrics.upstream_seconds, plugin, method).observe(
                    time.perf_counter() - started)

    async def query_data(self, plugin: str, endpoints: Sequence[str],
                         request: QueryDataRequest) -> dict[str, RawDataResponse]:
        return await self.query_data_message(plugin, endpoints,
                                             convert.query_data_request_to_proto(request))

    async def query_data_message(self, plugin: str, endpoints: Sequence[str],
                                 message: pb.QueryDataRequest) -> dict[str, RawDataResponse]:
        """QueryData with the request already in protobuf form (its PluginContext cached)."""

        async def run(endpoint: _Endpoint) -> dict[str, RawDataResponse]:
            try:
                if self.tracing.active():
                    # The trace context travels in gRPC metadata, as Grafana sends it.
                    with self.tracing.plugin_call("pluginv2.Data", "QueryData",
                                                  endpoint.target, plugin) as metadata:
                        reply = await endpoint.data.QueryData(message, timeout=self.timeout,
                                                              metadata=metadata)
                else:
                    reply = await endpoint.data.QueryData(message, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                raise error_from_rpc(exc, "QueryData") from None
            # By key: items() on a protobuf map runs through Python's Mapping mixins.
            responses = reply.responses
            return {ref: RawDataResponse(list(r.frames), r.error, r.status, r.errorSource,
                                         _FORMATS[r.format] if r.format in _FORMATS
                                         else FrameFormat(r.format))
                    for ref in responses for r in (responses[ref],)}

        return await self.call(plugin, "QueryData", endpoints, run)

    async def call_resource(self, plugin: str, endpoints: Sequence[str],
                            request: CallResourceRequest
                            ) -> AsyncIterator[CallResourceResponse]:
        """The plugin's messages as they come. Only a call that fails before its first
        message can be retried (nothing has been sent to the client yet), and only when
        it never reached a plugin."""
        state: dict[str, object] = {}

        async def first(endpoint: _Endpoint) -> CallResourceResponse | None:
            stream = endpoint.client.call_resource_stream(request, timeout=self.timeout)
            state["stream"] = stream
            state["target"] = endpoint
            return await anext(stream, None)

        head = await self.call(plugin, "CallResource", endpoints, first)
        stream = state["stream"]
        assert isinstance(stream, AsyncIterator)
        if head is None:
            raise PluginError("received empty resource response", method="CallResource")
        yield head
        async for message in stream:
            yield message
