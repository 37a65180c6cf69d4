"""Plugins and their frontend files: ``GET /api/plugins`` and ``/public/plugins/...``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from plugin_operator.gateway import access
from plugin_operator.gateway.assets import CACHE_CONTROL
from plugin_operator.gateway.errors import GatewayError
from plugin_operator.gateway.http import PLUGIN_LABEL, lookup, namespace
from plugin_operator.gateway.metrics import UNKNOWN
from plugin_operator.models.status import Phase
from plugin_operator.models.world import PluginRecord

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway


class PluginRoutes:
    """The routes; ``gateway`` supplies the routing table, authentication, RBAC and assets."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/plugins", self.plugins_list)
        router.add_get("/public/plugins/{plugin_id}/{path:.+}", self.public_file)

    async def plugins_list(self, request: web.Request) -> web.Response:
        gateway = self.gateway
        identity = await gateway.identity(request)
        listed = []
        for plugin in sorted(gateway.table.plugins.values(),
                             key=lambda p: (p.spec.plugin_id, str(p.key))):
            if not await gateway.gatekeeper.allowed(
                    identity, access.read_plugin(plugin.key.namespace, plugin.key.name)):
                continue
            base = f"public/plugins/{plugin.spec.plugin_id}"
            listed.append({
                "id": plugin.spec.plugin_id, "name": plugin.info.name or plugin.spec.plugin_id,
                "type": plugin.info.type, "info": {"version": plugin.spec.version},
                "module": f"{base}/module.js", "baseUrl": base,
                "signature": plugin.signature.status, "signatureType": plugin.signature.type,
                "signatureOrg": plugin.signature.org, "backend": plugin.info.backend,
                "executable": plugin.info.executable, "streaming": plugin.info.streaming,
                "alerting": plugin.info.alerting, "state": str(plugin.phase or ""),
                "enabled": plugin.phase is Phase.RUNNING,
                "ready": bool(gateway.table.endpoints(plugin)),
                "kubernetes": {"namespace": plugin.key.namespace, "name": plugin.key.name,
                               "mode": plugin.spec.mode.value}})
        return web.json_response(listed)

    async def public_file(self, request: web.Request) -> web.StreamResponse:
        # Grafana serves plugin frontends without a session (browsers load module.js with a
        # plain <script> request); only verified, not rejected, plugins are served.
        plugin_id = request.match_info["plugin_id"]
        request[PLUGIN_LABEL] = UNKNOWN  # these requests need no token: never label them freely
        plugin: PluginRecord = lookup(lambda: self.gateway.table.plugin_by_id(
            plugin_id, namespace(request)))
        request[PLUGIN_LABEL] = plugin.spec.plugin_id
        if plugin.phase is Phase.REJECTED:
            raise GatewayError(404, f"Plugin {plugin_id} was rejected and is not served",
                               "plugin.rejected")
        asset = await self.gateway.assets.asset(plugin, request.match_info["path"])
        headers = {"ETag": asset.etag, "Cache-Control": CACHE_CONTROL}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.FileResponse(asset.path, headers={**headers,
                                                     "Content-Type": asset.content_type})
