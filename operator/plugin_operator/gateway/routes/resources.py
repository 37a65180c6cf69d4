"""Resource calls: ``/api/datasources/uid/{uid}/resources/...`` and
``/api/plugins/{plugin_id}/resources/...`` streamed to and from the plugin's CallResource."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from plugin_operator.gateway import context
from plugin_operator.gateway.errors import from_plugin_error, utf8_text
from plugin_operator.gateway.http import IDENTITY
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import CallResourceRequest, PluginContext

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway

log = logging.getLogger("plugin_operator.gateway")

# Request headers a plugin must never see: the gateway's own credential and hop-by-hop ones.
# X-Id-Token and cookies come back only as the datasource's settings allow (passed_through).
_DROPPED_REQUEST_HEADERS = frozenset({"authorization", "cookie", "connection", "keep-alive",
                                      "x-plugin-operator-authorization", "x-id-token",
                                      "proxy-authorization", "te", "trailer",
                                      "transfer-encoding", "upgrade", "host",
                                      "content-length"})
_DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "connection", "keep-alive",
                                       "transfer-encoding", "content-length", "upgrade"})


class ResourceRoutes:
    """The routes; ``gateway`` supplies the routing table, authentication, RBAC and admission."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        limits = self.gateway.config.limits
        resource_body = self.gateway.expect(limits.resource_body_bytes,
                                            "--max-resource-body-bytes")
        r = router
        r.add_route("*", "/api/datasources/uid/{uid}/resources", self.ds_resource,
                    expect_handler=resource_body)
        r.add_route("*", "/api/datasources/uid/{uid}/resources/{path:.*}", self.ds_resource,
                    expect_handler=resource_body)
        r.add_route("*", "/api/plugins/{plugin_id}/resources", self.app_resource,
                    expect_handler=resource_body)
        r.add_route("*", "/api/plugins/{plugin_id}/resources/{path:.*}", self.app_resource,
                    expect_handler=resource_body)

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
        with self.gateway.admitted(plugin_id):
            stream = self.gateway.upstream.call_resource(plugin_id, endpoints, call)
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
        return await self.gateway.body(request, self.gateway.config.limits.resource_body_bytes,
                                       "--max-resource-body-bytes")

    async def ds_resource(self, request: web.Request) -> web.StreamResponse:
        resolved = await self.gateway.datasource(request, request.match_info["uid"])
        call = self._resource_request(request, await self._resource_body(request),
                                      self.gateway.ds_context(resolved, request[IDENTITY]),
                                      context.passed_through(request.headers,
                                                             resolved.record.spec.json_data))
        return await self._stream_resource(request, resolved.plugin.spec.plugin_id,
                                           resolved.endpoints, call)

    async def app_resource(self, request: web.Request) -> web.StreamResponse:
        plugin = await self.gateway.app_plugin(request, request.match_info["plugin_id"])
        call = self._resource_request(request, await self._resource_body(request),
                                      self.gateway.app_context(plugin, request[IDENTITY]))
        return await self._stream_resource(request, plugin.spec.plugin_id,
                                           self.gateway.table.endpoints(plugin), call)
