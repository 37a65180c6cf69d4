"""The Python plugin SDK: write Grafana backend plugins that speak Grafana's protocol.

A plugin implements any of the handler interfaces (on one object, or per datasource
instance through :class:`InstanceManagedHandlers`) and calls :func:`serve`. Like the Go
SDK's ``Manage``, :func:`serve` only points Grafana at another server when
``GF_PLUGIN_GRPC_ADDRESS_<ID>`` holds an address (:mod:`plugin_operator.sdk.locator`).
"""

from plugin_operator.protocol.errors import DownstreamError, PluginError
from plugin_operator.protocol.frames import Field, FieldType, Frame
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CallResourceResponse,
    CheckHealthRequest,
    CheckHealthResult,
    CollectMetricsRequest,
    CollectMetricsResult,
    DataChunk,
    DataQuery,
    DataResponse,
    ErrorSource,
    FrameFormat,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    QueryDataResponse,
    StreamRequest,
    StreamResponse,
    StreamStatus,
)
from plugin_operator.sdk.handlers import (
    CallResourceHandler,
    CheckHealthHandler,
    CollectMetricsHandler,
    QueryChunkedDataHandler,
    QueryDataHandler,
    StreamHandler,
)
from plugin_operator.sdk.instances import InstanceManager, instance_key
from plugin_operator.sdk.managed import InstanceManagedHandlers
from plugin_operator.sdk.serve import serve, serve_async

__all__ = [
    "CallResourceHandler",
    "CallResourceRequest",
    "CallResourceResponse",
    "CheckHealthHandler",
    "CheckHealthRequest",
    "CheckHealthResult",
    "CollectMetricsHandler",
    "CollectMetricsRequest",
    "CollectMetricsResult",
    "DataChunk",
    "DataQuery",
    "DataResponse",
    "DownstreamError",
    "ErrorSource",
    "Field",
    "FieldType",
    "Frame",
    "FrameFormat",
    "HealthStatus",
    "InstanceManagedHandlers",
    "InstanceManager",
    "PluginContext",
    "PluginError",
    "QueryChunkedDataHandler",
    "QueryDataHandler",
    "QueryDataRequest",
    "QueryDataResponse",
    "StreamHandler",
    "StreamRequest",
    "StreamResponse",
    "StreamStatus",
    "instance_key",
    "serve",
    "serve_async",
]
