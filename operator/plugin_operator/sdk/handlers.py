"""The handler interfaces a plugin implements, one small protocol per capability.

Shaped like the Go SDK's ``backend`` package: implement any subset on one object and
pass it to :func:`plugin_operator.sdk.serve`. Streaming RPCs are async generators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class QueryDataHandler(Protocol):
    async def query_data(self, request: QueryDataRequest) -> QueryDataResponse: ...


@runtime_checkable
class QueryChunkedDataHandler(Protocol):
    def query_chunked_data(self, request: QueryDataRequest) -> AsyncIterator[DataChunk]: ...


@runtime_checkable
class CallResourceHandler(Protocol):
    """Yield one or more responses; Grafana takes status and headers from the first."""

    def call_resource(self, request: CallResourceRequest
                      ) -> AsyncIterator[CallResourceResponse]: ...


@runtime_checkable
class CheckHealthHandler(Protocol):
    async def check_health(self, request: CheckHealthRequest) -> CheckHealthResult: ...


@runtime_checkable
class CollectMetricsHandler(Protocol):
    async def collect_metrics(self, request: CollectMetricsRequest
                              ) -> CollectMetricsResult: ...


@runtime_checkable
class StreamHandler(Protocol):
    """Grafana Live: all three methods together, as in the Go SDK."""

    async def subscribe_stream(self, request: StreamRequest) -> StreamResponse: ...

    def run_stream(self, request: StreamRequest) -> AsyncIterator[bytes]: ...

    async def publish_stream(self, request: StreamRequest) -> StreamResponse: ...
