"""The HTTP side of the gateway (aiohttp): routes in Grafana's shapes, metrics, draining."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import MultipartWriter, web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin_operator import __version__
from plugin_operator.models.world import PluginRecord
from plugin_operator.protocol import convert
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import (
    CallResourceRequest,
    CheckHealthRequest,
    CollectMetricsRequest,
    FrameFormat,
    HealthStatus,
    PluginContext,
    QueryDataRequest,
    StreamRequest,
    StreamStatus,
)

from . import access, context, failures, openapi, query
from .access import Gatekeeper, Identity, Permission
from .assets import CACHE_CONTROL, AssetStore
from .balancer import LoadTracker
from .bodies import HELD, BodyBudget, read_body, refuse_declared
from .errors import GatewayError, from_plugin_error, overloaded, utf8_text
from .limits import Limits, check_result_size
from .metrics import NO_LABEL, UNKNOWN, GatewayMetrics
from .quarantine import Quarantine, fingerprint, lost_while_serving
from .registry import Registry
from .routing import ResolvedDataSource, RouteLookupError, RoutingTable
from .streams import StreamHub, StreamTarget
from .timerange import shown
from .upstream import RawDataResponse, Upstream

log = logging.getLogger("plugin_operator.gateway")

ARROW_FILE = "application/vnd.apache.arrow.file"
_NO_CONTEXT = PluginContext()  # replaced by a cached message before the call
# Per-request state: the authenticated caller and the metric labels of what it reached.
IDENTITY = web.RequestKey("identity", Identity)
PLUGIN_LABEL = web.RequestKey("plugin", str)
UID_LABEL = web.RequestKey("uid", str)
MAX_CONCURRENT_DATASOURCES = 8  # Grafana's limit for one /api/ds/query
# Request headers a plugin must never see: the gateway's own credential and hop-by-hop ones.
# X-Id-Token and cookies come back only as the datasource's settings allow (passed_through).
_DROPPED_REQUEST_HEADERS = frozenset({"authorization", "cookie", "connection", "keep-alive",
                                      "x-plugin-operator-authorization", "x-id-token",
                                      "proxy-authorization", "te", "trailer",
                                      "transfer-encoding", "upgrade", "host",
                                      "content-length"})
_DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "connection", "keep-alive",
                                       "transfer-encoding", "content-length", "upgrade"})


@dataclass
class GatewayConfig:
    max_in_flight_per_plugin: int = 256
    call_timeout_seconds: float = 30.0
    context: context.ContextDefaults = field(default_factory=context.ContextDefaults)
    asset_cache_dir: Path = Path("/tmp/plugin-operator-gateway-assets")
    retry_after_seconds: int = 1
    limits: Limits = field(default_factory=Limits)
    # How long a query that was in progress when its backend died is refused (0: never).
    quarantine_seconds: float = 60.0


def _lookup(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RouteLookupError as exc:
        raise GatewayError(exc.status, exc.message, "lookup.failed") from exc


def _namespace(request: web.Request) -> str | None:
    return request.query.get("namespace") or None


def _health_body(status: HealthStatus, message: str, details: bytes) -> tuple[int, bytes]:
    payload: dict[str, Any] = {"status": status.name, "message": message}
    if details:
        with contextlib.suppress(ValueError):
            decoded = json.loads(details)
            if isinstance(decoded, dict) and decoded:
                payload["details"] = decoded
    return (200 if status is HealthStatus.OK else 400), json.dumps(payload).encode()


def _error_response(exc: GatewayError) -> web.Response:
    response = web.Response(status=exc.status, body=exc.body(), headers=exc.headers,
                            content_type="application/json")
    if exc.status == 413:
        response.force_close()  # the rest of the body is not wanted on this connection
    return response


def _sse_event(data: bytes, event: str = "") -> bytes:
    lines = data.split(b"\n")
    head = f"event: {event}\n".encode() if event else b""
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


class Gateway:
    def __init__(self, table: RoutingTable, gatekeeper: Gatekeeper, config: GatewayConfig,
                 metrics: GatewayMetrics | None = None) -> None:
        self.table = table
        self.gatekeeper = gatekeeper
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.tracker = LoadTracker(config.max_in_flight_per_plugin)
        self.upstream = Upstream(self.tracker, self.metrics, config.call_timeout_seconds)
        self.contexts = context.DatasourceContextCache(config.context)
        self.hub = StreamHub(self.upstream)
        self.assets = AssetStore(config.asset_cache_dir)
        self.bodies = BodyBudget(config.limits.bodies_in_flight_bytes)
        self.quarantine = Quarantine(config.quarantine_seconds)
        self.synced = False
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- application ----

    def app(self) -> web.Application:
        limits = self.config.limits
        # aiohttp's own cap only backs ours up: handlers read bodies with their route's limit.
        app = web.Application(middlewares=[self._middleware],
                              client_max_size=limits.largest_body())
        query_body = self._expect(limits.query_body_bytes, "--max-query-body-bytes")
        resource_body = self._expect(limits.resource_body_bytes, "--max-resource-body-bytes")
        publish_body = self._expect(limits.publish_body_bytes, "--max-publish-body-bytes")
        r = app.router
        r.add_post("/api/ds/query", self.ds_query, expect_handler=query_body)
        r.add_route("*", "/api/datasources/uid/{uid}/resources", self.ds_resource,
                    expect_handler=resource_body)
        r.add_route("*", "/api/datasources/uid/{uid}/resources/{path:.*}", self.ds_resource,
                    expect_handler=resource_body)
        r.add_get("/api/datasources/uid/{uid}/health", self.ds_health)
        r.add_route("*", "/api/plugins/{plugin_id}/resources", self.app_resource,
                    expect_handler=resource_body)
        r.add_route("*", "/api/plugins/{plugin_id}/resources/{path:.*}", self.app_resource,
                    expect_handler=resource_body)
        r.add_get("/api/plugins/{plugin_id}/health", self.app_health)
        r.add_get("/api/plugins", self.plugins_list)
        r.add_get("/public/plugins/{plugin_id}/{path:.+}", self.public_file)
        r.add_get("/metrics/plugins/{plugin_id}", self.plugin_metrics)
        r.add_get("/api/streams/{scope:ds|plugin}/{id}/{path:.+}", self.stream_subscribe)
        r.add_post("/api/streams/{scope:ds|plugin}/{id}/{path:.+}", self.stream_publish,
                   expect_handler=publish_body)
        r.add_post("/api/live/publish", self.live_publish, expect_handler=publish_body)
        r.add_get("/api/openapi.json", self.openapi)
        r.add_get("/metrics", self.own_metrics)
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        Registry(self).add_routes(r)  # datasources, /api/health, plugin errors and settings
        return app

    def _expect(self, limit: int, setting: str
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
        """``Expect: 100-continue``: invite the body only when its declared size fits, so a
        client learns of the 413 before sending anything."""

        async def expect(request: web.Request) -> web.StreamResponse | None:
            try:
                refuse_declared(request, limit, setting)
            except GatewayError as exc:
                return _error_response(exc)
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise web.HTTPExpectationFailed(text="Only 'Expect: 100-continue' is known")
            if request.version >= (1, 1):
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            return None

        return expect

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource.canonical \
            if request.match_info.route.resource is not None else "unmatched"
        self._in_flight += 1
        self._idle.clear()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except GatewayError as exc:
            status = exc.status
            return _error_response(exc)
        except web.HTTPException as exc:
            status = exc.status
            if status < 400:
                raise
            # aiohttp's own refusals (no such route, method not allowed) in Grafana's shape.
            kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
            return _error_response(GatewayError(status, f"{exc.reason}: {request.method} "
                                                        f"{shown(request.path, 200)}",
                                                "request.refused", kept))
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
            if HELD in request:
                self.bodies.give_back(request)
            metrics = self.metrics
            metrics.child(metrics.request_seconds, route).observe(
                time.perf_counter() - started)
            # Label values come only from objects the routing table knows (or the fixed
            # UNKNOWN), never from the URL: callers cannot grow the series without bound.
            metrics.child(metrics.requests, request.get(PLUGIN_LABEL, NO_LABEL),
                          request.get(UID_LABEL, NO_LABEL), route, str(status)).inc()

    async def drain(self, grace_seconds: float) -> bool:
        """Wait (at most ``grace_seconds``) until no request is in flight."""
        self.draining = True
        try:
            async with asyncio.timeout(grace_seconds):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    @contextmanager
    def _admitted(self, plugin: str) -> Iterator[None]:
        if not self.tracker.try_admit(plugin):
            self.metrics.rejected.labels(plugin, "in_flight_limit").inc()
            raise overloaded(plugin, self.config.retry_after_seconds)
        gauge = self.metrics.child(self.metrics.in_flight, plugin)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()
            self.tracker.release(plugin)

    async def _identity(self, request: web.Request) -> Identity:
        known: Identity | None = request.get(IDENTITY)
        if known is not None:
            return known
        identity = await self.gatekeeper.authenticate(request.headers)
        request[IDENTITY] = identity
        return identity

    async def _body(self, request: web.Request, limit: int, setting: str) -> bytes:
        """The request's body; call it only once the caller is authenticated."""
        return await read_body(request, limit, setting, self.bodies)

    async def _authorize(self, identity: Identity, permission: Permission,
                         request: web.Request) -> None:
        try:
            await self.gatekeeper.authorize(identity, permission)
        except GatewayError:
            self.metrics.rejected.labels(request.get(PLUGIN_LABEL, NO_LABEL), "forbidden").inc()
            raise

    async def _datasource(self, request: web.Request, uid: str) -> ResolvedDataSource:
        identity = await self._identity(request)
        request[UID_LABEL] = request[PLUGIN_LABEL] = UNKNOWN
        resolved: ResolvedDataSource = _lookup(
            lambda: self.table.datasource(uid, _namespace(request)))
        request[UID_LABEL] = resolved.record.spec.uid
        request[PLUGIN_LABEL] = resolved.plugin.spec.plugin_id
        key = resolved.record.key
        await self._authorize(identity, access.query_datasource(key.namespace, key.name),
                              request)
        return resolved

    def _ds_context(self, resolved: ResolvedDataSource, identity: Identity) -> PluginContext:
        return context.datasource_context(self.config.context, resolved.plugin,
                                          resolved.settings, context.caller(identity.username),
                                          resolved.record.key.namespace)

    async def _app_plugin(self, request: web.Request, plugin_id: str,
                          permission: Callable[[str, str], Permission] = access.query_plugin
                          ) -> PluginRecord:
        identity = await self._identity(request)
        request[PLUGIN_LABEL] = UNKNOWN
        plugin: PluginRecord = _lookup(lambda: self.table.plugin_by_id(plugin_id,
                                                                       _namespace(request)))
        request[PLUGIN_LABEL] = plugin.spec.plugin_id
        await self._authorize(identity, permission(plugin.key.namespace, plugin.key.name),
                              request)
        return plugin

    # What other route modules (registry.py) use.
    identity = _identity
    authorize = _authorize
    app_plugin = _app_plugin

    def _app_context(self, plugin: PluginRecord, identity: Identity) -> PluginContext:
        settings = _lookup(lambda: self.table.app_settings(plugin))
        return context.app_context(self.config.context, plugin, settings,
                                   context.caller(identity.username))

    # ---- /api/ds/query ----

    async def ds_query(self, request: web.Request) -> web.StreamResponse:
        # Who is asking before reading a byte; the datasources are named in the body, so
        # each one is authorized after parsing it (within tight limits) and before any call.
        identity = await self._identity(request)
        limits = self.config.limits
        parsed = query.parse_query_request(
            await self._body(request, limits.query_body_bytes, "--max-query-body-bytes"),
            int(time.time() * 1000), limits)
        targets: dict[str, ResolvedDataSource] = {}
        request[UID_LABEL] = request[PLUGIN_LABEL] = UNKNOWN
        for uid in parsed.by_datasource:
            targets[uid] = _lookup(lambda uid=uid: self.table.datasource(uid,  # type: ignore[misc]
                                                                         _namespace(request)))
        plugins = sorted({t.plugin.spec.plugin_id for t in targets.values()})
        request[PLUGIN_LABEL] = plugins[0] if len(plugins) == 1 else "mixed"
        request[UID_LABEL] = next(iter(targets)) if len(targets) == 1 else "mixed"
        for resolved in targets.values():
            key = resolved.record.key
            await self._authorize(identity, access.query_datasource(key.namespace, key.name),
                                  request)
        arrow = ARROW_FILE in request.headers.get("Accept", "")
        fmt = FrameFormat.ARROW if arrow else FrameFormat.JSON

        async def one(uid: str) -> dict[str, RawDataResponse]:
            resolved = targets[uid]
            plugin_id = resolved.plugin.spec.plugin_id
            batch = parsed.by_datasource[uid]
            suspect = b""
            if self.quarantine:  # fingerprints cost only while something is quarantined
                suspect = fingerprint(str(resolved.record.key), [q.json for q in batch.queries])
                self.quarantine.check(suspect)
            message = convert.query_data_request_to_proto(QueryDataRequest(
                plugin_context=_NO_CONTEXT, queries=batch.queries, format=fmt,
                headers=context.forwarded_headers(request.headers, uid,
                                                  self.config.context.org_id,
                                                  resolved.record.spec.json_data)))
            message.pluginContext.CopyFrom(self.contexts.get(
                resolved.plugin, resolved.settings, identity.username,
                resolved.record.key.namespace))
            with self._admitted(plugin_id):
                try:
                    raw = await self.upstream.query_data_message(
                        plugin_id, resolved.endpoints, message)
                except PluginError as exc:
                    if failures.lost_while_serving(exc):
                        self.quarantine.add(suspect or fingerprint(
                            str(resolved.record.key), [q.json for q in batch.queries]),
                            plugin_id)
                        log.warning("a backend of %s stopped while serving a query of %s; "
                                    "that query is quarantined: %s", plugin_id,
                                    resolved.record.key, exc)
                        raise lost_while_serving(plugin_id, self.quarantine.seconds) from exc
                    raise from_plugin_error(exc, other_message=f"Query data error: "
                                            f"{exc.message}") from exc
            check_result_size(((r.frames, r.format) for r in raw.values()), limits)
            return raw

        async def limited(uid: str) -> dict[str, RawDataResponse]:
            async with limit:
                return await one(uid)

        uids = list(parsed.by_datasource)
        raw: dict[str, RawDataResponse] = {}
        failed: dict[str, query.QueryResult] = {}
        if len(uids) == 1:
            # The common case: no tasks, no semaphore; its error is the request's error.
            raw = await one(uids[0])
            outcomes: list[Any] = []
        else:
            limit = asyncio.Semaphore(MAX_CONCURRENT_DATASOURCES)
            outcomes = await asyncio.gather(*(limited(uid) for uid in uids),
                                            return_exceptions=True)
        for uid, outcome in zip(uids if outcomes else [], outcomes, strict=True):
            if isinstance(outcome, GatewayError):
                if len(uids) == 1:
                    raise outcome
                failed.update(query.failed_results(
                    [q.ref_id for q in parsed.by_datasource[uid].queries], outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                raw.update(outcome)
        if arrow:
            return await self._arrow_response(request, raw, failed)
        results = {ref: query.result_from_response(r.frames, r.format, r.error, r.status,
                                                   r.error_source) for ref, r in raw.items()}
        results.update(failed)
        return web.Response(status=query.overall_status(results),
                            body=query.encode_results(results), content_type="application/json")

    async def _arrow_response(self, request: web.Request, raw: Mapping[str, RawDataResponse],
                              failed: Mapping[str, query.QueryResult]) -> web.StreamResponse:
        """Arrow frames exactly as the plugin wrote them, one multipart part per frame."""
        writer = MultipartWriter("mixed")
        any_error = bool(failed)
        for ref_id in sorted(raw):
            response = raw[ref_id]
            if response.error:
                any_error = True
                failed = {**failed, ref_id: query.result_from_response(
                    [], FrameFormat.JSON, response.error, response.status,
                    response.error_source)}
                continue
            if response.format is not FrameFormat.ARROW:
                # A plugin that ignored the requested format; hand its JSON on as JSON.
                for frame in response.frames:
                    writer.append(frame, {"Content-Type": "application/json",
                                          "X-Grafana-Ref-Id": ref_id})
                continue
            for frame in response.frames:
                writer.append(frame, {"Content-Type": ARROW_FILE, "X-Grafana-Ref-Id": ref_id})
        for ref_id in sorted(failed):
            writer.append(query.encode_results({ref_id: failed[ref_id]}),
                          {"Content-Type": "application/json", "X-Grafana-Ref-Id": ref_id})
        return web.Response(status=400 if any_error else 200, body=writer)

    # ---- resources ----

    @staticmethod
    def _resource_request(request: web.Request, body: bytes, ctx: PluginContext,
                          passed: Mapping[str, str] | None = None) -> CallResourceRequest:
        path = utf8_text(request.match_info.get("path", ""), "the resource path")
        url = path + (f"?{request.query_string}" if request.query_string else "")
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            if name.lower() not in _DROPPED_REQUEST_HEADERS:
                headers.setdefault(utf8_text(name, "a header name"), []).append(
                    utf8_text(value, f"header {name!r}"))
        for name, value in (passed or {}).items():
            headers[name] = [value]
        return CallResourceRequest(plugin_context=ctx, path=path, method=request.method,
                                   url=url, headers=headers, body=body)

    async def _stream_resource(self, request: web.Request, plugin_id: str,
                               endpoints: tuple[str, ...], call: CallResourceRequest
                               ) -> web.StreamResponse:
        with self._admitted(plugin_id):
            stream = self.upstream.call_resource(plugin_id, endpoints, call)
            try:
                first = await anext(stream)
            except PluginError as exc:
                raise from_plugin_error(exc, other_message="Failed to call resource") from exc
            headers: CIMultiDict[str] = CIMultiDict()
            for name, values in first.headers.items():
                if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                    for value in values:
                        headers.add(name, value)
            if "Content-Type" not in headers and first.status != 204:
                headers["Content-Type"] = "application/json"
            headers.setdefault("Content-Security-Policy", "sandbox")
            headers.setdefault("X-Content-Type-Options", "nosniff")
            response = web.StreamResponse(status=first.status, headers=headers)
            await response.prepare(request)
            if first.body:
                await response.write(first.body)
            try:
                async for part in stream:
                    if part.body:
                        await response.write(part.body)
            except PluginError as exc:
                # Status and some of the body are already out: all that is left is to cut
                # the response short, which the client sees as an incomplete body.
                log.warning("resource stream of %s broke: %s", plugin_id, exc)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response

    async def _resource_body(self, request: web.Request) -> bytes:
        return await self._body(request, self.config.limits.resource_body_bytes,
                                "--max-resource-body-bytes")

    async def ds_resource(self, request: web.Request) -> web.StreamResponse:
        resolved = await self._datasource(request, request.match_info["uid"])
        call = self._resource_request(request, await self._resource_body(request),
                                      self._ds_context(resolved, request[IDENTITY]),
                                      context.passed_through(request.headers,
                                                             resolved.record.spec.json_data))
        return await self._stream_resource(request, resolved.plugin.spec.plugin_id,
                                           resolved.endpoints, call)

    async def app_resource(self, request: web.Request) -> web.StreamResponse:
        plugin = await self._app_plugin(request, request.match_info["plugin_id"])
        call = self._resource_request(request, await self._resource_body(request),
                                      self._app_context(plugin, request[IDENTITY]))
        return await self._stream_resource(request, plugin.spec.plugin_id,
                                           self.table.endpoints(plugin), call)

    # ---- health and metrics ----

    async def _health(self, plugin_id: str, endpoints: tuple[str, ...],
                      ctx: PluginContext, headers: dict[str, str] | None = None
                      ) -> web.Response:
        with self._admitted(plugin_id):
            try:
                result = await self.upstream.call(
                    plugin_id, "CheckHealth", endpoints,
                    lambda e: e.client.check_health(CheckHealthRequest(ctx, headers or {}),
                                                    timeout=self.config.call_timeout_seconds))
            except PluginError as exc:
                if exc.code is grpc.StatusCode.UNIMPLEMENTED:
                    status, body = _health_body(HealthStatus.UNKNOWN,
                                                "Health check not implemented", b"")
                    return web.Response(status=status, body=body,
                                        content_type="application/json")
                raise from_plugin_error(exc, other_message="Plugin health check failed") \
                    from exc
        status, body = _health_body(result.status, result.message, result.json_details)
        return web.Response(status=status, body=body, content_type="application/json")

    async def ds_health(self, request: web.Request) -> web.Response:
        resolved = await self._datasource(request, request.match_info["uid"])
        return await self._health(resolved.plugin.spec.plugin_id, resolved.endpoints,
                                  self._ds_context(resolved, request[IDENTITY]),
                                  context.forwarded_headers(request.headers,
                                                            resolved.record.spec.uid,
                                                            self.config.context.org_id,
                                                            resolved.record.spec.json_data))

    async def app_health(self, request: web.Request) -> web.Response:
        plugin = await self._app_plugin(request, request.match_info["plugin_id"])
        return await self._health(plugin.spec.plugin_id, self.table.endpoints(plugin),
                                  self._app_context(plugin, request[IDENTITY]))

    async def plugin_metrics(self, request: web.Request) -> web.Response:
        plugin = await self._app_plugin(request, request.match_info["plugin_id"],
                                        access.read_plugin)
        plugin_id = plugin.spec.plugin_id
        with self._admitted(plugin_id):
            try:
                result = await self.upstream.call(
                    plugin_id, "CollectMetrics", self.table.endpoints(plugin),
                    lambda e: e.client.collect_metrics(
                        CollectMetricsRequest(context.metrics_context(plugin_id)),
                        timeout=self.config.call_timeout_seconds))
                body = result.prometheus
            except PluginError as exc:
                if exc.code is not grpc.StatusCode.UNIMPLEMENTED:
                    raise from_plugin_error(exc, other_message="Failed to collect plugin "
                                                               "metrics") from exc
                body = b""
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    # ---- plugins and their frontend files ----

    async def plugins_list(self, request: web.Request) -> web.Response:
        identity = await self._identity(request)
        listed = []
        for plugin in sorted(self.table.plugins.values(),
                             key=lambda p: (p.spec.plugin_id, str(p.key))):
            if not await self.gatekeeper.allowed(
                    identity, access.read_plugin(plugin.key.namespace, plugin.key.name)):
                continue
            facts = plugin.facts
            base = f"public/plugins/{plugin.spec.plugin_id}"
            listed.append({
                "id": plugin.spec.plugin_id, "name": facts.name or plugin.spec.plugin_id,
                "type": facts.type, "info": {"version": plugin.spec.version},
                "module": f"{base}/module.js", "baseUrl": base,
                "signature": facts.signature_status, "signatureType": facts.signature_type,
                "signatureOrg": facts.signature_org, "backend": facts.backend,
                "executable": facts.executable, "streaming": facts.streaming,
                "alerting": facts.alerting, "state": plugin.phase,
                "enabled": plugin.phase == "Running",
                "ready": bool(self.table.endpoints(plugin)),
                "kubernetes": {"namespace": plugin.key.namespace, "name": plugin.key.name,
                               "mode": plugin.spec.mode.value}})
        return web.json_response(listed)

    async def public_file(self, request: web.Request) -> web.StreamResponse:
        # Grafana serves plugin frontends without a session (browsers load module.js with a
        # plain <script> request); only verified, not rejected, plugins are served.
        plugin_id = request.match_info["plugin_id"]
        request[PLUGIN_LABEL] = UNKNOWN  # these requests need no token: never label them freely
        plugin: PluginRecord = _lookup(lambda: self.table.plugin_by_id(plugin_id,
                                                                       _namespace(request)))
        request[PLUGIN_LABEL] = plugin.spec.plugin_id
        if plugin.phase == "Rejected":
            raise GatewayError(404, f"Plugin {plugin_id} was rejected and is not served",
                               "plugin.rejected")
        asset = await self.assets.asset(plugin, request.match_info["path"])
        headers = {"ETag": asset.etag, "Cache-Control": CACHE_CONTROL}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.FileResponse(asset.path, headers={**headers,
                                                     "Content-Type": asset.content_type})

    # ---- streams ----

    async def _stream_target(self, request: web.Request, scope: str, ident: str
                             ) -> tuple[str, Callable[[StreamRequest], Awaitable[StreamTarget]],
                                        tuple[str, ...], str]:
        """(channel key, a fresh-target factory, endpoints now, plugin id) for a channel."""
        identity: Identity
        if scope == "ds":
            resolved = await self._datasource(request, ident)
            identity = request[IDENTITY]
            key = resolved.record.key
            channel = f"ds/{key.namespace}/{ident}"

            async def ds_target(base: StreamRequest) -> StreamTarget:
                fresh = _lookup(lambda: self.table.datasource(ident, key.namespace))
                return StreamTarget(fresh.plugin.spec.plugin_id, fresh.endpoints,
                                    StreamRequest(self._ds_context(fresh, identity), base.path,
                                                  base.data, base.headers))

            return channel, ds_target, resolved.endpoints, resolved.plugin.spec.plugin_id
        plugin = await self._app_plugin(request, ident)
        identity = request[IDENTITY]
        channel = f"plugin/{plugin.key.namespace}/{plugin.key.name}"

        async def plugin_target(base: StreamRequest) -> StreamTarget:
            fresh = self.table.plugins.get(plugin.key, plugin)
            ctx = context.app_context(self.config.context, fresh,
                                      _lookup(lambda: self.table.app_settings(fresh)),
                                      context.caller(identity.username))
            return StreamTarget(fresh.spec.plugin_id, self.table.endpoints(fresh),
                                StreamRequest(ctx, base.path, base.data, base.headers))

        return channel, plugin_target, self.table.endpoints(plugin), plugin.spec.plugin_id

    async def _unary_stream_call(self, plugin_id: str, method: str,
                                 target: StreamTarget) -> tuple[StreamStatus, bytes]:
        with self._admitted(plugin_id):
            try:
                if method == "SubscribeStream":
                    result = await self.upstream.call(
                        plugin_id, method, target.endpoints,
                        lambda e: e.client.subscribe_stream(
                            target.request, timeout=self.config.call_timeout_seconds))
                else:
                    result = await self.upstream.call(
                        plugin_id, method, target.endpoints,
                        lambda e: e.client.publish_stream(
                            target.request, timeout=self.config.call_timeout_seconds))
            except PluginError as exc:
                raise from_plugin_error(exc, other_message=f"{method} failed") from exc
        if result.status is StreamStatus.NOT_FOUND:
            raise GatewayError(404, f"stream {target.request.path!r} not found",
                               "stream.notFound")
        if result.status is StreamStatus.PERMISSION_DENIED:
            raise GatewayError(403, f"the plugin refused stream {target.request.path!r}",
                               "stream.permissionDenied")
        return result.status, result.data

    async def stream_subscribe(self, request: web.Request) -> web.StreamResponse:
        scope, ident, path = (request.match_info[k] for k in ("scope", "id", "path"))
        channel, make_target, _, plugin_id = await self._stream_target(request, scope, ident)
        base = StreamRequest(path=utf8_text(path, "the stream path"),
                             data=utf8_text(request.query.get("data", ""), "data").encode())
        _, initial = await self._unary_stream_call(plugin_id, "SubscribeStream",
                                                   await make_target(base))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(_sse_event(initial or b"{}", "subscribed"))

        async def prepare() -> StreamTarget:
            return await make_target(base)

        packets: AsyncIterator[bytes] = self.hub.listen(f"{channel}/{path}", prepare)
        try:
            async for packet in packets:
                await response.write(_sse_event(packet))
            await response.write(_sse_event(b"{}", "end"))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            await packets.aclose()  # type: ignore[attr-defined]
        return response

    async def _publish_body(self, request: web.Request) -> bytes:
        return await self._body(request, self.config.limits.publish_body_bytes,
                                "--max-publish-body-bytes")

    async def _publish(self, request: web.Request, scope: str, ident: str, path: str,
                       data: Callable[[], Awaitable[bytes]]) -> web.Response:
        """PublishStream; ``data`` is read only once the caller may publish there."""
        channel, make_target, _, plugin_id = await self._stream_target(request, scope, ident)
        _, published = await self._unary_stream_call(
            plugin_id, "PublishStream",
            await make_target(StreamRequest(path=utf8_text(path, "the stream path"),
                                            data=await data())))
        if published:
            self.hub.publish(f"{channel}/{path}", published)
        return web.json_response({})

    async def stream_publish(self, request: web.Request) -> web.Response:
        scope, ident, path = (request.match_info[k] for k in ("scope", "id", "path"))
        return await self._publish(request, scope, ident, path,
                                   lambda: self._publish_body(request))

    async def live_publish(self, request: web.Request) -> web.Response:
        # The channel is in the body: authenticate first, then read it within the small
        # publish limit; _publish authorizes the channel before anything reaches a plugin.
        await self._identity(request)
        try:
            payload = json.loads(await self._publish_body(request))
            scope, ident, path = str(payload["channel"]).split("/", 2)
            data = json.dumps(payload.get("data")).encode()
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise GatewayError(400, 'body must be {"channel": "<ds|plugin>/<id>/<path>", '
                                    '"data": {...}}', "live.badRequest") from exc
        if scope not in ("ds", "plugin") or not ident or not path:
            raise GatewayError(400, f"channel {shown(payload['channel'])}: only "
                                    "ds/<uid>/<path> and plugin/<pluginId>/<path> channels "
                                    "reach plugins", "live.badChannel")

        async def body() -> bytes:
            return data

        return await self._publish(request, scope, ident, path, body)

    # ---- the gateway itself ----

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(__version__))

    async def own_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if not self.synced:
            return web.json_response({"status": "routing table not synced yet"}, status=503)
        return web.json_response({"status": "ok"})
