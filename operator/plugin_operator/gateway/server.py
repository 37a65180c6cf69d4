"""The HTTP side of the gateway (aiohttp): routes in Grafana's shapes, metrics, draining.

``Gateway`` holds what every route needs (routing table, authentication, RBAC, admission,
metrics, draining) and serves its own few routes; each family of Grafana's routes lives in
``routes/`` and is handed the ``Gateway``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin_operator import __version__
from plugin_operator.kube.reviews import Identity
from plugin_operator.models.world import PluginRecord
from plugin_operator.protocol.models import PluginContext

from . import access, context, openapi
from .access import Gatekeeper, Permission
from .assets import AssetStore
from .balancer import LoadTracker
from .bodies import HELD, BodyBudget, read_body, refuse_declared
from .errors import GatewayError, overloaded
from .http import IDENTITY, PLUGIN_LABEL, UID_LABEL, lookup, namespace
from .limits import Limits
from .metrics import NO_LABEL, UNKNOWN, GatewayMetrics
from .quarantine import Quarantine, still_running
from .routes.health import HealthRoutes
from .routes.plugins import PluginRoutes
from .routes.query import QueryRoutes
from .routes.registry import Registry
from .routes.resources import ResourceRoutes
from .routes.streams import StreamRoutes
from .routing import ResolvedDataSource, RoutingTable
from .streams import StreamHub
from .timerange import shown
from .tracing import Tracing
from .upstream import Upstream


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


def _error_response(exc: GatewayError) -> web.Response:
    response = web.Response(status=exc.status, body=exc.body(), headers=exc.headers,
                            content_type="application/json")
    if exc.status == 413:
        response.force_close()  # the rest of the body is not wanted on this connection
    return response


class _Admission:
    """Counts one admitted request in flight until its block ends (a class: cheaper than a
    generator-based context manager on the query path)."""

    __slots__ = ("plugin", "tracker")

    def __init__(self, tracker: LoadTracker, plugin: str) -> None:
        self.tracker = tracker
        self.plugin = plugin

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self.tracker.release(self.plugin)


class Gateway:
    def __init__(self, table: RoutingTable, gatekeeper: Gatekeeper, config: GatewayConfig,
                 metrics: GatewayMetrics | None = None, tracing: Tracing | None = None) -> None:
        self.table = table
        self.gatekeeper = gatekeeper
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.tracing = tracing or Tracing()
        self.tracker = LoadTracker(config.max_in_flight_per_plugin)
        self.upstream = Upstream(self.tracker, self.metrics, config.call_timeout_seconds,
                                 self.tracing)
        self.contexts = context.DatasourceContextCache(config.context)
        self.hub = StreamHub(self.upstream)
        self.assets = AssetStore(config.asset_cache_dir)
        self.bodies = BodyBudget(config.limits.bodies_in_flight_bytes)
        self.quarantine = Quarantine(config.quarantine_seconds)
        # A query that ran out of time may still be running in its backend: the same query
        # is not sent again (to another replica) until its deadline would have passed again.
        self.timed_out = Quarantine(config.call_timeout_seconds, refusal=still_running)
        self._gauged: set[str] = set()  # plugins whose in-flight gauge reads the tracker
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
        r = app.router
        QueryRoutes(self).add_routes(r)  # /api/ds/query
        ResourceRoutes(self).add_routes(r)  # datasource and app plugin resources
        HealthRoutes(self).add_routes(r)  # datasource and app plugin health, plugin metrics
        PluginRoutes(self).add_routes(r)  # /api/plugins and the plugins' frontend files
        StreamRoutes(self).add_routes(r)  # Grafana Live: subscribe and publish
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
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        self._in_flight += 1
        self._idle.clear()
        status = 500
        traced = self.tracing.start_request(request.method, route, request.path,
                                            request.headers)
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
            if traced is not None:
                traced.finish(status, {"plugin_id": request.get(PLUGIN_LABEL, NO_LABEL),
                                       "datasource_uid": request.get(UID_LABEL, NO_LABEL)})
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

    def _admitted(self, plugin: str) -> _Admission:
        """``with gateway.admitted(plugin):`` around a plugin call: 503 when the plugin
        already has its maximum in flight, else counted in flight until the block ends."""
        if not self.tracker.try_admit(plugin):
            self.metrics.rejected.labels(plugin, "in_flight_limit").inc()
            raise overloaded(plugin, self.config.retry_after_seconds)
        if plugin not in self._gauged:
            # The in-flight gauge reads the tracker's count when scraped: nothing to update
            # per request.
            self._gauged.add(plugin)
            in_flight = self.tracker.plugin_in_flight
            self.metrics.in_flight.labels(plugin).set_function(
                lambda: in_flight.get(plugin, 0))
        return _Admission(self.tracker, plugin)

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
        resolved: ResolvedDataSource = lookup(
            lambda: self.table.datasource(uid, namespace(request)))
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
        plugin: PluginRecord = lookup(lambda: self.table.plugin_by_id(plugin_id,
                                                                      namespace(request)))
        request[PLUGIN_LABEL] = plugin.spec.plugin_id
        await self._authorize(identity, permission(plugin.key.namespace, plugin.key.name),
                              request)
        return plugin

    def _app_context(self, plugin: PluginRecord, identity: Identity) -> PluginContext:
        settings = lookup(lambda: self.table.app_settings(plugin))
        return context.app_context(self.config.context, plugin, settings,
                                   context.caller(identity.username))

    # What the route families (routes/) use.
    expect = _expect
    admitted = _admitted
    body = _body
    identity = _identity
    authorize = _authorize
    datasource = _datasource
    ds_context = _ds_context
    app_plugin = _app_plugin
    app_context = _app_context

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
