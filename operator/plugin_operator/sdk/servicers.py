"""gRPC servicers: decode the request, call the plugin's handler, encode the reply.

Errors become gRPC statuses: a :class:`PluginError` keeps its code and source; anything
else is ``UNKNOWN`` from the plugin. The source travels in the ErrorInfo trailer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from plugin_operator.protocol import convert
from plugin_operator.protocol.errors import STATUS_DETAILS_KEY, PluginError, status_details
from plugin_operator.protocol.models import CollectMetricsResult, ErrorSource, FrameFormat
from plugin_operator.protocol.stubs import backend_pb2 as pb
from plugin_operator.protocol.stubs import backend_pb2_grpc
from plugin_operator.sdk.handlers import (
    CallResourceHandler,
    CheckHealthHandler,
    CollectMetricsHandler,
    QueryChunkedDataHandler,
    QueryDataHandler,
    StreamHandler,
)
from plugin_operator.sdk.managed import current_tenant

log = logging.getLogger("plugin_operator.sdk")
Context = grpc.aio.ServicerContext[Any, Any]


async def _abort(context: Context, method: str, exc: BaseException) -> NoReturn:
    if isinstance(exc, PluginError):
        code, message, source = exc.code, exc.message, exc.source
    else:
        log.error("%s failed", method, exc_info=exc)
        code, message, source = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}", \
            ErrorSource.PLUGIN
    await context.abort(code, message, trailing_metadata=(
        (STATUS_DETAILS_KEY, status_details(code, message, source)),))
    raise AssertionError("unreachable")  # abort raises


def _enter(context: Context) -> None:
    tenant = dict(context.invocation_metadata() or ()).get("tenantid", "")
    current_tenant.set(str(tenant))


class DataServicer(backend_pb2_grpc.DataServicer):
    def __init__(self, handler: object) -> None:
        self.handler = handler

    async def QueryData(self, request: pb.QueryDataRequest,  # noqa: N802
                        context: Context) -> pb.QueryDataResponse:
        _enter(context)
        if not isinstance(self.handler, QueryDataHandler):
            await _abort(context, "QueryData", PluginError(
                "QueryData is not implemented", code=grpc.StatusCode.UNIMPLEMENTED))
        try:
            result = await self.handler.query_data(convert.query_data_request_from_proto(request))
        except Exception as exc:
            await _abort(context, "QueryData", exc)
        return convert.query_data_response_to_proto(result, FrameFormat(request.format))

    async def QueryChunkedData(self, request: pb.QueryChunkedDataRequest,  # noqa: N802
                               context: Context) -> AsyncIterator[pb.QueryChunkedDataResponse]:
        _enter(context)
        fmt = FrameFormat(request.format)
        if not isinstance(self.handler, QueryChunkedDataHandler):
            for query in request.queries:
                yield pb.QueryChunkedDataResponse(refId=query.refId, status=501,
                                                  error="QueryChunkedData is not implemented")
            return
        try:
            async for chunk in self.handler.query_chunked_data(
                    convert.query_data_request_from_proto(request)):
                yield convert.data_chunk_to_proto(chunk, fmt)
        except Exception as exc:
            await _abort(context, "QueryChunkedData", exc)


class ResourceServicer(backend_pb2_grpc.ResourceServicer):
    def __init__(self, handler: object) -> None:
        self.handler = handler

    async def CallResource(self, request: pb.CallResourceRequest,  # noqa: N802
                           context: Context) -> AsyncIterator[pb.CallResourceResponse]:
        _enter(context)
        if not isinstance(self.handler, CallResourceHandler):
            yield pb.CallResourceResponse(code=501)
            return
        try:
            async for part in self.handler.call_resource(
                    convert.call_resource_request_from_proto(request)):
                yield convert.call_resource_response_to_proto(part)
        except Exception as exc:
            await _abort(context, "CallResource", exc)


class DiagnosticsServicer(backend_pb2_grpc.DiagnosticsServicer):
    def __init__(self, handler: object, registry: CollectorRegistry = REGISTRY) -> None:
        self.handler = handler
        self.registry = registry

    async def CheckHealth(self, request: pb.CheckHealthRequest,  # noqa: N802
                          context: Context) -> pb.CheckHealthResponse:
        _enter(context)
        if not isinstance(self.handler, CheckHealthHandler):
            return pb.CheckHealthResponse(status=pb.CheckHealthResponse.OK)
        try:
            result = await self.handler.check_health(
                convert.check_health_request_from_proto(request))
        except Exception as exc:
            await _abort(context, "CheckHealth", exc)
        return convert.check_health_result_to_proto(result)

    async def CollectMetrics(self, request: pb.CollectMetricsRequest,  # noqa: N802
                             context: Context) -> pb.CollectMetricsResponse:
        _enter(context)
        try:
            if isinstance(self.handler, CollectMetricsHandler):
                result = await self.handler.collect_metrics(
                    convert.collect_metrics_request_from_proto(request))
            else:
                result = CollectMetricsResult(generate_latest(self.registry))
        except Exception as exc:
            await _abort(context, "CollectMetrics", exc)
        return convert.collect_metrics_result_to_proto(result)


class StreamServicer(backend_pb2_grpc.StreamServicer):
    def __init__(self, handler: StreamHandler) -> None:
        self.handler = handler

    async def SubscribeStream(self, request: pb.SubscribeStreamRequest,  # noqa: N802
                              context: Context) -> pb.SubscribeStreamResponse:
        _enter(context)
        try:
            result = await self.handler.subscribe_stream(
                convert.stream_request_from_proto(request))
        except Exception as exc:
            await _abort(context, "SubscribeStream", exc)
        return convert.subscribe_response_to_proto(result)

    async def PublishStream(self, request: pb.PublishStreamRequest,  # noqa: N802
                            context: Context) -> pb.PublishStreamResponse:
        _enter(context)
        try:
            result = await self.handler.publish_stream(convert.stream_request_from_proto(request))
        except Exception as exc:
            await _abort(context, "PublishStream", exc)
        return convert.publish_response_to_proto(result)

    async def RunStream(self, request: pb.RunStreamRequest,  # noqa: N802
                        context: Context) -> AsyncIterator[pb.StreamPacket]:
        _enter(context)
        try:
            async for data in self.handler.run_stream(convert.stream_request_from_proto(request)):
                yield pb.StreamPacket(data=data)
        except Exception as exc:
            await _abort(context, "RunStream", exc)
