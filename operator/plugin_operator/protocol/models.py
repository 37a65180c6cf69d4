"""Typed requests and responses of the pluginv2 services, free of protobuf.

Handlers, the client's callers and the gateway work with these; only
:mod:`plugin_operator.protocol.convert` turns them into protobuf messages and back.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugin_operator.protocol.frames import Frame


class FrameFormat(enum.IntEnum):
    """``DataFrameFormat``: how frames are encoded in a DataResponse."""

    ARROW = 0
    JSON = 1


class ErrorSource(enum.StrEnum):
    """Who is to blame for an error, as Grafana reports it (``errorSource``)."""

    NONE = ""
    PLUGIN = "plugin"
    DOWNSTREAM = "downstream"


class HealthStatus(enum.IntEnum):
    UNKNOWN = 0
    OK = 1
    ERROR = 2


class StreamStatus(enum.IntEnum):
    """Status of SubscribeStream and PublishStream responses."""

    OK = 0
    NOT_FOUND = 1
    PERMISSION_DENIED = 2


def _decode_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"jsonData must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class User:
    login: str = ""
    name: str = ""
    email: str = ""
    role: str = ""


@dataclass(frozen=True)
class AppInstanceSettings:
    json_data: bytes = b""
    decrypted_secure_json_data: dict[str, str] = field(default_factory=dict)
    last_updated_ms: int = 0
    api_version: str = ""

    def json(self) -> dict[str, Any]:
        """``jsonData`` decoded (``{}`` when empty)."""
        return _decode_json_object(self.json_data)


@dataclass(frozen=True)
class DataSourceInstanceSettings:
    id: int = 0
    uid: str = ""
    name: str = ""
    url: str = ""
    user: str = ""
    database: str = ""
    basic_auth_enabled: bool = False
    basic_auth_user: str = ""
    json_data: bytes = b""
    decrypted_secure_json_data: dict[str, str] = field(default_factory=dict)
    last_updated_ms: int = 0
    api_version: str = ""

    def json(self) -> dict[str, Any]:
        """``jsonData`` decoded (``{}`` when empty)."""
        return _decode_json_object(self.json_data)


@dataclass(frozen=True)
class PluginContext:
    org_id: int = 0
    plugin_id: str = ""
    user: User | None = None
    app_instance_settings: AppInstanceSettings | None = None
    datasource_instance_settings: DataSourceInstanceSettings | None = None
    grafana_config: dict[str, str] = field(default_factory=dict)
    plugin_version: str = ""
    user_agent: str = ""
    api_version: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class TimeRange:
    from_ms: int = 0
    to_ms: int = 0


@dataclass(frozen=True)
class DataQuery:
    ref_id: str = "A"
    query_type: str = ""
    max_data_points: int = 0
    interval_ms: int = 0
    time_range: TimeRange = field(default_factory=TimeRange)
    json: bytes = b"{}"

    def model(self) -> dict[str, Any]:
        """The query model as posted to Grafana (``DataQuery.json``) decoded."""
        return _decode_json_object(self.json)


@dataclass(frozen=True)
class QueryDataRequest:
    plugin_context: PluginContext = field(default_factory=PluginContext)
    queries: list[DataQuery] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    format: FrameFormat = FrameFormat.ARROW


@dataclass
class DataResponse:
    frames: list[Frame] = field(default_factory=list)
    error: str = ""
    status: int = 0
    error_source: ErrorSource = ErrorSource.NONE
    format: FrameFormat = FrameFormat.ARROW

    @classmethod
    def failure(cls, message: str, *, status: int = 500,
                source: ErrorSource = ErrorSource.PLUGIN) -> DataResponse:
        return cls(error=message, status=status, error_source=source)


@dataclass
class QueryDataResponse:
    responses: dict[str, DataResponse] = field(default_factory=dict)


@dataclass
class DataChunk:
    """One QueryChunkedData message: (part of) a frame, or an error for a refId."""

    ref_id: str
    frame_id: str = ""
    frame: Frame | None = None
    error: str = ""
    status: int = 0
    error_source: ErrorSource = ErrorSource.NONE
    format: FrameFormat = FrameFormat.ARROW


@dataclass(frozen=True)
class CallResourceRequest:
    plugin_context: PluginContext = field(default_factory=PluginContext)
    path: str = ""
    method: str = "GET"
    url: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class CallResourceResponse:
    status: int = 200
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, value: Any, status: int = 200) -> CallResourceResponse:
        return cls(status, {"Content-Type": ["application/json"]}, json.dumps(value).encode())


@dataclass(frozen=True)
class CheckHealthRequest:
    plugin_context: PluginContext = field(default_factory=PluginContext)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckHealthResult:
    status: HealthStatus = HealthStatus.OK
    message: str = ""
    json_details: bytes = b""


@dataclass(frozen=True)
class CollectMetricsRequest:
    plugin_context: PluginContext = field(default_factory=PluginContext)


@dataclass
class CollectMetricsResult:
    prometheus: bytes = b""


@dataclass(frozen=True)
class StreamRequest:
    """SubscribeStream, RunStream and PublishStream requests share these fields."""

    plugin_context: PluginContext = field(default_factory=PluginContext)
    path: str = ""
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResponse:
    """SubscribeStream and PublishStream responses."""

    status: StreamStatus = StreamStatus.OK
    data: bytes = b""
