"""A plugin's health and metrics: ``/api/datasources/uid/{uid}/health``,
``/api/plugins/{plugin_id}/health`` (CheckHealth) and ``/metrics/plugins/{plugin_id}``
(CollectMetrics)."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from plugin_operator.gateway import access, context
from plugin_operator.gateway.errors import from_plugin_error
from plugin_operator.gateway.http import IDENTITY
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import (
    CheckHealthRequest,
    CollectMetricsRequest,
    HealthStatus,
    PluginContext,
)

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway


def _health_body(status: HealthStatus, message: str, details: bytes) -> tuple[int, bytes]:
    payload: dict[str, Any] = {"status": status.name, "message": message}
    if details:
        with contextlib.suppress(ValueError):
            decoded = json.loads(details)
            if isinstance(decoded, dict) and decoded:
                payload["details"] = decoded
    return (200 if status is HealthStatus.OK else 400), json.dumps(payload).encode()


class HealthRoutes:
    """The routes; ``gateway`` supplies the routing table, authentication, RBAC and admission."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        r = router
        r.add_get("/api/datasources/uid/{uid}/health", self.ds_health)
        r.add_get("/api/plugins/{plugin_id}/health", self.app_health)
        r.add_get("/metrics/plugins/{plugin_id}", self.plugin_metrics)

    async def _health(self, plugin_id: str, endpoints: tuple[str, ...],
                      ctx: PluginContext, headers: dict[str, str] | None = None
                      ) -> web.Response:
        gateway = self.gateway
        with gateway.admitted(plugin_id):
            try:
                result = await gateway.upstream.call(
                    plugin_id, "CheckHealth", endpoints,
                    lambda e: e.client.check_health(CheckHealthRequest(ctx, headers or {}),
                                                    timeout=gateway.config.call_timeout_seconds))
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
        gateway = self.gateway
        resolved = await gateway.datasource(request, request.match_info["uid"])
        return await self._health(resolved.plugin.spec.plugin_id, resolved.endpoints,
                                  gateway.ds_context(resolved, request[IDENTITY]),
                                  context.forwarded_headers(request.headers,
                                                            resolved.record.spec.uid,
                                                            gateway.config.context.org_id,
                                                            resolved.record.spec.json_data))

    async def app_health(self, request: web.Request) -> web.Response:
        gateway = self.gateway
        plugin = await gateway.app_plugin(request, request.match_info["plugin_id"])
        return await self._health(plugin.spec.plugin_id, gateway.table.endpoints(plugin),
                                  gateway.app_context(plugin, request[IDENTITY]))

    async def plugin_metrics(self, request: web.Request) -> web.Response:
        gateway = self.gateway
        plugin = await gateway.app_plugin(request, request.match_info["plugin_id"],
                                          access.read_plugin)
        plugin_id = plugin.spec.plugin_id
        with gateway.admitted(plugin_id):
            try:
                result = await gateway.upstream.call(
                    plugin_id, "CollectMetrics", gateway.table.endpoints(plugin),
                    lambda e: e.client.collect_metrics(
                        CollectMetricsRequest(context.metrics_context(plugin_id)),
                        timeout=gateway.config.call_timeout_seconds))
                body = result.prometheus
            except PluginError as exc:
                if exc.code is not grpc.StatusCode.UNIMPLEMENTED:
                    raise from_plugin_error(exc, other_message="Failed to collect plugin "
                                                               "metrics") from exc
                body = b""
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
