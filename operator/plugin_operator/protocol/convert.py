"""The only place where protocol models and pluginv2 protobuf messages meet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from plugin_operator.protocol.models import (
    AppInstanceSettings,
    CallResourceRequest,
    CallResourceResponse,
    CheckHealthRequest,
    CheckHealthResult,
    CollectMetricsRequest,
    CollectMetricsResult,
    DataChunk,
    DataQuery,
    DataResponse,
    DataSourceInstanceSettings,
    ErrorSource,
    FrameFormat,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    QueryDataResponse,
    StreamRequest,
    StreamResponse,
    StreamStatus,
    TimeRange,
    User,
)
from plugin_operator.protocol.stubs import backend_pb2 as pb

if TYPE_CHECKING:
    from plugin_operator.protocol.frames import Frame

# The frame codecs (and pyarrow, 40+ MB resident) load on the first frame, so processes that
# never see one, such as the operator's health checks, do not pay for them.


def encode_frame(frame: Frame, fmt: FrameFormat) -> bytes:
    from plugin_operator.protocol.frames import frame_to_arrow, frame_to_json

    return frame_to_json(frame) if fmt is FrameFormat.JSON else frame_to_arrow(frame)


def decode_frame(data: bytes, fmt: FrameFormat) -> Frame:
    from plugin_operator.protocol.frames import frame_from_arrow, frame_from_json

    return frame_from_json(data) if fmt is FrameFormat.JSON else frame_from_arrow(data)


def _error_source(value: str) -> ErrorSource:
    try:
        return ErrorSource(value)
    except ValueError:
        return ErrorSource.PLUGIN


# ---- plugin context ----

def plugin_context_to_proto(ctx: PluginContext) -> pb.PluginContext:
    message = pb.PluginContext(orgId=ctx.org_id, pluginId=ctx.plugin_id,
                               grafanaConfig=ctx.grafana_config,
                               pluginVersion=ctx.plugin_version, userAgent=ctx.user_agent,
                               apiVersion=ctx.api_version, namespace=ctx.namespace)
    if ctx.user is not None:
        message.user.CopyFrom(pb.User(login=ctx.user.login, name=ctx.user.name,
                                      email=ctx.user.email, role=ctx.user.role))
    if (app := ctx.app_instance_settings) is not None:
        message.appInstanceSettings.CopyFrom(pb.AppInstanceSettings(
            jsonData=app.json_data, decryptedSecureJsonData=app.decrypted_secure_json_data,
            lastUpdatedMS=app.last_updated_ms, apiVersion=app.api_version))
    if (ds := ctx.datasource_instance_settings) is not None:
        message.dataSourceInstanceSettings.CopyFrom(pb.DataSourceInstanceSettings(
            id=ds.id, uid=ds.uid, name=ds.name, url=ds.url, user=ds.user, database=ds.database,
            basicAuthEnabled=ds.basic_auth_enabled, basicAuthUser=ds.basic_auth_user,
            jsonData=ds.json_data, decryptedSecureJsonData=ds.decrypted_secure_json_data,
            lastUpdatedMS=ds.last_updated_ms, apiVersion=ds.api_version))
    return message


def plugin_context_from_proto(message: pb.PluginContext) -> PluginContext:
    user = app = ds = None
    if message.HasField("user"):
        u = message.user
        user = User(login=u.login, name=u.name, email=u.email, role=u.role)
    if message.HasField("appInstanceSettings"):
        a = message.appInstanceSettings
        app = AppInstanceSettings(json_data=a.jsonData,
                                  decrypted_secure_json_data=dict(a.decryptedSecureJsonData),
                                  last_updated_ms=a.lastUpdatedMS, api_version=a.apiVersion)
    if message.HasField("dataSourceInstanceSettings"):
        d = message.dataSourceInstanceSettings
        ds = DataSourceInstanceSettings(
            id=d.id, uid=d.uid, name=d.name, url=d.url, user=d.user, database=d.database,
            basic_auth_enabled=d.basicAuthEnabled, basic_auth_user=d.basicAuthUser,
            json_data=d.jsonData, decrypted_secure_json_data=dict(d.decryptedSecureJsonData),
            last_updated_ms=d.lastUpdatedMS, api_version=d.apiVersion)
    return PluginContext(org_id=message.orgId, plugin_id=message.pluginId, user=user,
                         app_instance_settings=app, datasource_instance_settings=ds,
                         grafana_config=dict(message.grafanaConfig),
                         plugin_version=message.pluginVersion, user_agent=message.userAgent,
                         api_version=message.apiVersion, namespace=message.namespace)


# ---- data ----

def _query_to_proto(q: DataQuery) -> pb.DataQuery:
    return pb.DataQuery(refId=q.ref_id, maxDataPoints=q.max_data_points,
                        intervalMS=q.interval_ms, queryType=q.query_type, json=q.json,
                        timeRange=pb.TimeRange(fromEpochMS=q.time_range.from_ms,
                                               toEpochMS=q.time_range.to_ms))


def _query_from_proto(q: pb.DataQuery) -> DataQuery:
    return DataQuery(ref_id=q.refId, query_type=q.queryType, max_data_points=q.maxDataPoints,
                     interval_ms=q.intervalMS, json=q.json,
                     time_range=TimeRange(q.timeRange.fromEpochMS, q.timeRange.toEpochMS))


def query_data_request_to_proto(req: QueryDataRequest) -> pb.QueryDataRequest:
    return query_data_message(plugin_context_to_proto(req.plugin_context), req.queries,
                              req.headers, req.format)


def query_data_message(plugin_context: pb.PluginContext, queries: list[DataQuery],
                       headers: Mapping[str, str], fmt: FrameFormat) -> pb.QueryDataRequest:
    """A QueryDataRequest around a PluginContext already in protobuf form (the gateway keeps
    one per datasource settings version): no dataclass, no empty context built and then
    overwritten."""
    message = pb.QueryDataRequest(pluginContext=plugin_context,
                                  format=fmt.value,  # type: ignore[arg-type]
                                  queries=[_query_to_proto(q) for q in queries])
    fields = message.headers  # set one by one: the constructor fills maps through Python code
    for name, value in headers.items():
        fields[name] = value
    return message


def query_chunked_request_to_proto(req: QueryDataRequest) -> pb.QueryChunkedDataRequest:
    return pb.QueryChunkedDataRequest(
        pluginContext=plugin_context_to_proto(req.plugin_context), headers=req.headers,
        format=int(req.format),  # type: ignore[arg-type]
        queries=[_query_to_proto(q) for q in req.queries])


def query_data_request_from_proto(
        message: pb.QueryDataRequest | pb.QueryChunkedDataRequest) -> QueryDataRequest:
    return QueryDataRequest(plugin_context=plugin_context_from_proto(message.pluginContext),
                            queries=[_query_from_proto(q) for q in message.queries],
                            headers=dict(message.headers), format=FrameFormat(message.format))


def data_response_to_proto(resp: DataResponse, fmt: FrameFormat, ref_id: str) -> pb.DataResponse:
    """Encode with the requested format; status defaults like the Go SDK (200, or 500)."""
    frames = []
    for frame in resp.frames:
        if not frame.ref_id:
            frame.ref_id = ref_id
        frames.append(encode_frame(frame, fmt))
    status = resp.status or (500 if resp.error else 200)
    source = resp.error_source if resp.error else ErrorSource.NONE
    return pb.DataResponse(frames=frames, error=resp.error, status=status,
                           errorSource=source.value, format=int(fmt))  # type: ignore[arg-type]


def data_response_from_proto(message: pb.DataResponse) -> DataResponse:
    fmt = FrameFormat(message.format)
    return DataResponse(frames=[decode_frame(f, fmt) for f in message.frames],
                        error=message.error, status=message.status,
                        error_source=_error_source(message.errorSource), format=fmt)


def query_data_response_to_proto(resp: QueryDataResponse,
                                 fmt: FrameFormat) -> pb.QueryDataResponse:
    return pb.QueryDataResponse(responses={ref: data_response_to_proto(r, fmt, ref)
                                           for ref, r in resp.responses.items()})


def query_data_response_from_proto(message: pb.QueryDataResponse) -> QueryDataResponse:
    return QueryDataResponse({ref: data_response_from_proto(r)
                              for ref, r in message.responses.items()})


def data_chunk_to_proto(chunk: DataChunk, fmt: FrameFormat) -> pb.QueryChunkedDataResponse:
    frame = b""
    if chunk.frame is not None:
        if not chunk.frame.ref_id:
            chunk.frame.ref_id = chunk.ref_id
        frame = encode_frame(chunk.frame, fmt)
    status = chunk.status or (500 if chunk.error else 200)
    return pb.QueryChunkedDataResponse(
        refId=chunk.ref_id, frameId=chunk.frame_id, frame=frame, error=chunk.error,
        status=status, errorSource=chunk.error_source.value,
        format=int(fmt))  # type: ignore[arg-type]


def data_chunk_from_proto(message: pb.QueryChunkedDataResponse) -> DataChunk:
    fmt = FrameFormat(message.format)
    return DataChunk(ref_id=message.refId, frame_id=message.frameId,
                     frame=decode_frame(message.frame, fmt) if message.frame else None,
                     error=message.error, status=message.status,
                     error_source=_error_source(message.errorSource), format=fmt)


# ---- resources ----

def _headers_to_proto(headers: Mapping[str, list[str]]) -> dict[str, pb.StringList]:
    return {k: pb.StringList(values=v) for k, v in headers.items()}


def _headers_from_proto(headers: Mapping[str, pb.StringList]) -> dict[str, list[str]]:
    return {k: list(v.values) for k, v in headers.items()}


def call_resource_request_to_proto(req: CallResourceRequest) -> pb.CallResourceRequest:
    return pb.CallResourceRequest(pluginContext=plugin_context_to_proto(req.plugin_context),
                                  path=req.path, method=req.method, url=req.url or req.path,
                                  headers=_headers_to_proto(req.headers), body=req.body)


def call_resource_request_from_proto(message: pb.CallResourceRequest) -> CallResourceRequest:
    return CallResourceRequest(plugin_context=plugin_context_from_proto(message.pluginContext),
                               path=message.path, method=message.method, url=message.url,
                               headers=_headers_from_proto(message.headers), body=message.body)


def call_resource_response_to_proto(resp: CallResourceResponse) -> pb.CallResourceResponse:
    return pb.CallResourceResponse(code=resp.status, headers=_headers_to_proto(resp.headers),
                                   body=resp.body)


def call_resource_response_from_proto(message: pb.CallResourceResponse) -> CallResourceResponse:
    return CallResourceResponse(status=message.code,
                                headers=_headers_from_proto(message.headers), body=message.body)


# ---- diagnostics ----

def check_health_request_to_proto(req: CheckHealthRequest) -> pb.CheckHealthRequest:
    return pb.CheckHealthRequest(pluginContext=plugin_context_to_proto(req.plugin_context),
                                 headers=req.headers)


def check_health_request_from_proto(message: pb.CheckHealthRequest) -> CheckHealthRequest:
    return CheckHealthRequest(plugin_context=plugin_context_from_proto(message.pluginContext),
                              headers=dict(message.headers))


def check_health_result_to_proto(result: CheckHealthResult) -> pb.CheckHealthResponse:
    return pb.CheckHealthResponse(status=int(result.status),  # type: ignore[arg-type]
                                  message=result.message, jsonDetails=result.json_details)


def check_health_result_from_proto(message: pb.CheckHealthResponse) -> CheckHealthResult:
    return CheckHealthResult(status=HealthStatus(message.status), message=message.message,
                             json_details=message.jsonDetails)


def collect_metrics_request_to_proto(req: CollectMetricsRequest) -> pb.CollectMetricsRequest:
    return pb.CollectMetricsRequest(pluginContext=plugin_context_to_proto(req.plugin_context))


def collect_metrics_request_from_proto(
        message: pb.CollectMetricsRequest) -> CollectMetricsRequest:
    return CollectMetricsRequest(plugin_context=plugin_context_from_proto(message.pluginContext))


def collect_metrics_result_to_proto(result: CollectMetricsResult) -> pb.CollectMetricsResponse:
    return pb.CollectMetricsResponse(
        metrics=pb.CollectMetricsResponse.Payload(prometheus=result.prometheus))


def collect_metrics_result_from_proto(message: pb.CollectMetricsResponse) -> CollectMetricsResult:
    return CollectMetricsResult(prometheus=message.metrics.prometheus)


# ---- streams ----

StreamRequestProto = pb.SubscribeStreamRequest | pb.RunStreamRequest | pb.PublishStreamRequest


def stream_request_from_proto(message: StreamRequestProto) -> StreamRequest:
    return StreamRequest(plugin_context=plugin_context_from_proto(message.pluginContext),
                         path=message.path, data=message.data, headers=dict(message.headers))


def subscribe_request_to_proto(req: StreamRequest) -> pb.SubscribeStreamRequest:
    return pb.SubscribeStreamRequest(pluginContext=plugin_context_to_proto(req.plugin_context),
                                     path=req.path, data=req.data, headers=req.headers)


def run_stream_request_to_proto(req: StreamRequest) -> pb.RunStreamRequest:
    return pb.RunStreamRequest(pluginContext=plugin_context_to_proto(req.plugin_context),
                               path=req.path, data=req.data, headers=req.headers)


def publish_request_to_proto(req: StreamRequest) -> pb.PublishStreamRequest:
    return pb.PublishStreamRequest(pluginContext=plugin_context_to_proto(req.plugin_context),
                                   path=req.path, data=req.data, headers=req.headers)


def subscribe_response_to_proto(resp: StreamResponse) -> pb.SubscribeStreamResponse:
    return pb.SubscribeStreamResponse(status=int(resp.status),  # type: ignore[arg-type]
                                      data=resp.data)


def publish_response_to_proto(resp: StreamResponse) -> pb.PublishStreamResponse:
    return pb.PublishStreamResponse(status=int(resp.status),  # type: ignore[arg-type]
                                    data=resp.data)


def stream_response_from_proto(
        message: pb.SubscribeStreamResponse | pb.PublishStreamResponse) -> StreamResponse:
    return StreamResponse(status=StreamStatus(message.status), data=message.data)
