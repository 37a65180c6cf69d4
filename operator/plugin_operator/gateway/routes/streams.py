"""Grafana Live over HTTP: ``/api/streams/{ds|plugin}/{id}/{path}`` (subscribe with GET as
server-sent events, publish with POST) and ``POST /api/live/publish``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from plugin_operator.gateway import context
from plugin_operator.gateway.errors import GatewayError, from_plugin_error, utf8_text
from plugin_operator.gateway.http import IDENTITY, lookup
from plugin_operator.gateway.streams import StreamTarget
from plugin_operator.gateway.timerange import shown
from plugin_operator.kube.reviews import Identity
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import StreamRequest, StreamStatus

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway


def _sse_event(data: bytes, event: str = "") -> bytes:
    lines = data.split(b"\n")
    head = f"event: {event}\n".encode() if event else b""
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


class StreamRoutes:
    """The routes; ``gateway`` supplies the routing table, authentication, RBAC, admission
    and the stream hub."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        limits = self.gateway.config.limits
        publish_body = self.gateway.expect(limits.publish_body_bytes,
                                           "--max-publish-body-bytes")
        r = router
        r.add_get("/api/streams/{scope:ds|plugin}/{id}/{path:.+}", self.stream_subscribe)
        r.add_post("/api/streams/{scope:ds|plugin}/{id}/{path:.+}", self.stream_publish,
                   expect_handler=publish_body)
        r.add_post("/api/live/publish", self.live_publish, expect_handler=publish_body)

    async def _stream_target(self, request: web.Request, scope: str, ident: str
                             ) -> tuple[str, Callable[[StreamRequest], Awaitable[StreamTarget]],
                                        tuple[str, ...], str]:
        """(channel key, a fresh-target factory, endpoints now, plugin id) for a channel."""
        gateway = self.gateway
        identity: Identity
        if scope == "ds":
            resolved = await gateway.datasource(request, ident)
            identity = request[IDENTITY]
            key = resolved.record.key
            channel = f"ds/{key.namespace}/{ident}"

            async def ds_target(base: StreamRequest) -> StreamTarget:
                fresh = lookup(lambda: gateway.table.datasource(ident, key.namespace))
                return StreamTarget(fresh.plugin.spec.plugin_id, fresh.endpoints,
                                    StreamRequest(gateway.ds_context(fresh, identity), base.path,
                                                  base.data, base.headers))

            return channel, ds_target, resolved.endpoints, resolved.plugin.spec.plugin_id
        plugin = await gateway.app_plugin(request, ident)
        identity = request[IDENTITY]
        channel = f"plugin/{plugin.key.namespace}/{plugin.key.name}"

        async def plugin_target(base: StreamRequest) -> StreamTarget:
            fresh = gateway.table.plugins.get(plugin.key, plugin)
            ctx = context.app_context(gateway.config.context, fresh,
                                      lookup(lambda: gateway.table.app_settings(fresh)),
                                      context.caller(identity.username))
            return StreamTarget(fresh.spec.plugin_id, gateway.table.endpoints(fresh),
                                StreamRequest(ctx, base.path, base.data, base.headers))

        return channel, plugin_target, gateway.table.endpoints(plugin), plugin.spec.plugin_id

    async def _unary_stream_call(self, plugin_id: str, method: str,
                                 target: StreamTarget) -> tuple[StreamStatus, bytes]:
        gateway = self.gateway
        with gateway.admitted(plugin_id):
            try:
                if method == "SubscribeStream":
                    result = await gateway.upstream.call(
                        plugin_id, method, target.endpoints,
                        lambda e: e.client.subscribe_stream(
                            target.request, timeout=gateway.config.call_timeout_seconds))
                else:
                    result = await gateway.upstream.call(
                        plugin_id, method, target.endpoints,
                        lambda e: e.client.publish_stream(
                            target.request, timeout=gateway.config.call_timeout_seconds))
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

        packets: AsyncIterator[bytes] = self.gateway.hub.listen(f"{channel}/{path}", prepare)
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
        return await self.gateway.body(request, self.gateway.config.limits.publish_body_bytes,
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
            self.gateway.hub.publish(f"{channel}/{path}", published)
        return web.json_response({})

    async def stream_publish(self, request: web.Request) -> web.Response:
        scope, ident, path = (request.match_info[k] for k in ("scope", "id", "path"))
        return await self._publish(request, scope, ident, path,
                                   lambda: self._publish_body(request))

    async def live_publish(self, request: web.Request) -> web.Response:
        # The channel is in the body: authenticate first, then read it within the small
        # publish limit; _publish authorizes the channel before anything reaches a plugin.
        await self.gateway.identity(request)
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
