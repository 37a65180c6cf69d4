"""Route every call to the instance for its datasource or app (Go SDK ``datasource.Manage``).

Instances implement whichever handler interfaces they support; a call the instance does
not handle gets the SDK's default answer (health OK, resources 501, query UNIMPLEMENTED).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator

import grpc

from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CallResourceResponse,
    CheckHealthRequest,
    CheckHealthResult,
    DataChunk,
    QueryDataRequest,
    QueryDataResponse,
    StreamRequest,
    StreamResponse,
    StreamStatus,
)
from plugin_operator.sdk.handlers import (
    CallResourceHandler,
    CheckHealthHandler,
    QueryChunkedDataHandler,
    QueryDataHandler,
    StreamHandler,
)
from plugin_operator.sdk.instances import InstanceFactory, InstanceManager

# Set by the gRPC adapters from the ``tenantid`` metadata of the call being served.
current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def _not_implemented(what: str) -> PluginError:
    return PluginError(f"this plugin does not implement {what}",
                       code=grpc.StatusCode.UNIMPLEMENTED)


class InstanceManagedHandlers:
    """All handler interfaces, each delegating to the instance serving the request."""

    def __init__(self, factory: InstanceFactory) -> None:
        self.instances = InstanceManager(factory)

    async def query_data(self, request: QueryDataRequest) -> QueryDataResponse:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, QueryDataHandler):
                raise _not_implemented("QueryData")
            return await inst.query_data(request)

    async def query_chunked_data(self, request: QueryDataRequest) -> AsyncIterator[DataChunk]:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, QueryChunkedDataHandler):
                for query in request.queries:
                    yield DataChunk(ref_id=query.ref_id, status=501,
                                    error="QueryChunkedData is not implemented")
                return
            async for chunk in inst.query_chunked_data(request):
                yield chunk

    async def call_resource(self, request: CallResourceRequest
                            ) -> AsyncIterator[CallResourceResponse]:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, CallResourceHandler):
                yield CallResourceResponse(status=501)
                return
            async for part in inst.call_resource(request):
                yield part

    async def check_health(self, request: CheckHealthRequest) -> CheckHealthResult:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, CheckHealthHandler):
                return CheckHealthResult()
            return await inst.check_health(request)

    async def subscribe_stream(self, request: StreamRequest) -> StreamResponse:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, StreamHandler):
                return StreamResponse(StreamStatus.NOT_FOUND)
            return await inst.subscribe_stream(request)

    async def publish_stream(self, request: StreamRequest) -> StreamResponse:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, StreamHandler):
                return StreamResponse(StreamStatus.NOT_FOUND)
            return await inst.publish_stream(request)

    async def run_stream(self, request: StreamRequest) -> AsyncIterator[bytes]:
        async with self.instances.use(request.plugin_context, current_tenant.get()) as inst:
            if not isinstance(inst, StreamHandler):
                raise _not_implemented("RunStream")
            async for packet in inst.run_stream(request):
                yield packet

    async def dispose(self) -> None:
        await self.instances.dispose_all()
