"""Grafana's read-only registry routes: datasources, plugin errors and settings, /api/health.

Answers are built from the DataSourceInstance and Plugin objects alone (their specs and
status), never from the Secrets they reference: ``secureJsonFields`` names the secure keys a
datasource has, with ``true``, exactly as Grafana does, and no value ever leaves the gateway
here. Datasources are Kubernetes objects, so every write Grafana accepts on these paths is
refused with 405 and told to use kubectl.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from plugin_operator import __version__
from plugin_operator.gateway import access
from plugin_operator.gateway.access import Permission
from plugin_operator.gateway.errors import GatewayError
from plugin_operator.gateway.routing import stable_datasource_id
from plugin_operator.kube.reviews import Identity
from plugin_operator.models.resources import DATASOURCE_PLURAL, GROUP, ObjectRef
from plugin_operator.models.status import Phase
from plugin_operator.models.world import DataSourceRecord, PluginRecord

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Grafana's plugin error codes (its pkg/plugins ErrorCode); anything else the operator
# rejects a plugin for is reported with the operator's own code from status.message.
GRAFANA_ERROR_CODES = frozenset({"signatureMissing", "signatureInvalid", "signatureModified",
                                 "angular"})
_MESSAGE_CODE = re.compile(r"^\[([A-Za-z0-9_.-]+)\]")
READ_ONLY_ID = "datasource.readOnly"


def read_datasource(namespace: str, name: str) -> Permission:
    """Reading a datasource's registry entry: what ``kubectl get dsi`` already shows."""
    return Permission("get", DATASOURCE_PLURAL, namespace, name)


def read_only(request: web.Request) -> GatewayError:
    """405 for writes: a DataSourceInstance is changed with kubectl, not through Grafana's
    API (405, not 403: no token or role would make the gateway accept the call)."""
    return GatewayError(
        405, f"{request.method} {request.path}: datasources are DataSourceInstance objects "
             f"(group {GROUP}) and read-only here; create, change or delete them with kubectl "
             f"(kubectl -n <namespace> apply -f / edit / delete {DATASOURCE_PLURAL} <name>)",
        READ_ONLY_ID, {"Allow": "GET, HEAD"})


def secure_json_fields(names: Iterable[str]) -> dict[str, bool]:
    """Grafana's ``secureJsonFields``: which secure keys are set, never their values."""
    return dict.fromkeys(sorted(names), True)


def datasource_dto(record: DataSourceRecord, plugin_id: str, org_id: int) -> dict[str, Any]:
    """Grafana's ``dtos.DataSource`` (GET /api/datasources/uid/{uid}, /name/, /{id})."""
    spec = record.spec
    return {
        "id": stable_datasource_id(record.key), "uid": spec.uid, "orgId": org_id,
        "name": spec.name, "type": plugin_id, "typeLogoUrl": "", "access": "proxy",
        "url": spec.url, "user": spec.user, "database": spec.database,
        "basicAuth": spec.basic_auth, "basicAuthUser": spec.basic_auth_user,
        "withCredentials": False, "isDefault": False, "jsonData": dict(spec.json_data),
        "secureJsonFields": secure_json_fields(spec.secure_json_data_from),
        "version": record.settings_version, "readOnly": True}


def datasource_list_item(record: DataSourceRecord, plugin_id: str, type_name: str,
                         org_id: int) -> dict[str, Any]:
    """Grafana's ``dtos.DataSourceListItemDTO`` (GET /api/datasources)."""
    spec = record.spec
    return {
        "id": stable_datasource_id(record.key), "uid": spec.uid, "orgId": org_id,
        "name": spec.name, "type": plugin_id, "typeName": type_name, "typeLogoUrl": "",
        "access": "proxy", "url": spec.url, "user": spec.user, "database": spec.database,
        "basicAuth": spec.basic_auth, "isDefault": False, "jsonData": dict(spec.json_data),
        "readOnly": True}


def plugin_error_code(plugin: PluginRecord) -> str:
    """Grafana's error code for a Rejected plugin, else the operator's own code."""
    code = plugin.signature.error_code
    if code:
        return code
    found = _MESSAGE_CODE.match(plugin.message)
    return found.group(1) if found else "rejected"


def plugin_settings(plugin: PluginRecord) -> dict[str, Any]:
    """Grafana's ``dtos.PluginSetting``, with what the Plugin object knows."""
    plugin_id = plugin.spec.plugin_id
    base = f"public/plugins/{plugin_id}"
    return {
        "name": plugin.info.name or plugin_id, "type": plugin.info.type, "id": plugin_id,
        "enabled": plugin.phase is Phase.RUNNING, "pinned": False, "autoEnabled": False,
        "module": f"{base}/module.js", "baseUrl": base,
        "info": {"version": plugin.spec.version, "author": {"name": plugin.signature.org},
                 "description": "", "links": [], "logos": {"small": "", "large": ""},
                 "screenshots": [], "updated": "", "keywords": []},
        "includes": [], "dependencies": {"grafanaDependency": "", "grafanaVersion": "*",
                                         "plugins": []},
        "jsonData": dict(plugin.spec.app_json_data),
        "secureJsonFields": secure_json_fields(plugin.spec.app_secure_json_data_from),
        "defaultNavUrl": "", "latestVersion": "", "hasUpdate": False, "state": "",
        "signature": plugin.signature.status, "signatureType": plugin.signature.type,
        "signatureOrg": plugin.signature.org, "loadingStrategy": "script"}


class Registry:
    """The routes; ``gateway`` supplies the routing table, authentication and RBAC."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        r = router
        r.add_route("*", "/api/datasources", self._reads(self.datasources_list))
        r.add_route("*", "/api/datasources/uid/{uid}", self._reads(self.datasource_by_uid))
        r.add_route("*", "/api/datasources/name/{name}", self._reads(self.datasource_by_name))
        r.add_route("*", "/api/datasources/id/{name}", self._reads(self.datasource_id_by_name))
        r.add_route("*", "/api/datasources/{id}", self._reads(self.datasource_by_id))
        r.add_get("/api/health", self.health)
        r.add_get("/api/frontend/settings", self.frontend_settings)
        r.add_get("/api/plugins/errors", self.plugin_errors)
        r.add_get("/api/plugins/{plugin_id}/settings", self.plugin_settings)

    @staticmethod
    def _reads(handler: Handler) -> Handler:
        async def route(request: web.Request) -> web.StreamResponse:
            if request.method not in ("GET", "HEAD"):
                raise read_only(request)
            return await handler(request)

        return route

    @property
    def _org_id(self) -> int:
        return self.gateway.config.context.org_id

    def _plugin_of(self, record: DataSourceRecord) -> PluginRecord | None:
        return self.gateway.table.plugins.get(ObjectRef(record.key.namespace,
                                                  record.spec.plugin_name))

    def _type(self, record: DataSourceRecord) -> str:
        plugin = self._plugin_of(record)
        return plugin.spec.plugin_id if plugin is not None else record.plugin_id

    async def _visible(self, identity: Identity, records: Iterable[DataSourceRecord]
                       ) -> list[DataSourceRecord]:
        allowed = []
        for record in records:
            if await self.gateway.gatekeeper.allowed(
                    identity, read_datasource(record.key.namespace, record.key.name)):
                allowed.append(record)
        return allowed

    async def _one(self, request: web.Request, matches: list[DataSourceRecord],
                   what: str) -> DataSourceRecord:
        """The one datasource ``what`` names (``?namespace=`` narrows), authorized."""
        identity = await self.gateway.identity(request)
        namespace = request.query.get("namespace") or None
        found = [r for r in matches if namespace in (None, r.key.namespace)]
        if not found:
            raise GatewayError(404, "Data source not found: no DataSourceInstance with "
                                    f"{what}", "datasource.notFound")
        if len(found) > 1:
            # The same name or uid in several namespaces: those the caller may read decide.
            found = await self._visible(identity, found) or found
        if len(found) > 1:
            names = ", ".join(sorted(str(r.key) for r in found))
            raise GatewayError(409, f"{what} is used by several DataSourceInstances ({names});"
                                    " add ?namespace=<namespace>", "datasource.ambiguous")
        record = found[0]
        await self.gateway.authorize(identity, read_datasource(record.key.namespace,
                                                               record.key.name), request)
        return record

    def _records(self) -> list[DataSourceRecord]:
        return list(self.gateway.table.datasources.values())

    async def datasources_list(self, request: web.Request) -> web.Response:
        identity = await self.gateway.identity(request)
        namespace = request.query.get("namespace") or None
        records = [r for r in self._records() if namespace in (None, r.key.namespace)]
        listed = []
        for record in sorted(await self._visible(identity, records),
                             key=lambda r: (r.spec.name.lower(), str(r.key))):
            plugin = self._plugin_of(record)
            type_name = (plugin.info.name if plugin is not None else "") or self._type(record)
            listed.append(datasource_list_item(record, self._type(record), type_name,
                                               self._org_id))
        return web.json_response(listed)

    async def datasource_by_uid(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        record = await self._one(request, [r for r in self._records() if r.spec.uid == uid],
                                 f"uid {uid!r}")
        return web.json_response(datasource_dto(record, self._type(record), self._org_id))

    async def _by_name(self, request: web.Request) -> DataSourceRecord:
        name = request.match_info["name"]
        return await self._one(request, [r for r in self._records() if r.spec.name == name],
                               f"name {name!r}")

    async def datasource_by_name(self, request: web.Request) -> web.Response:
        record = await self._by_name(request)
        return web.json_response(datasource_dto(record, self._type(record), self._org_id))

    async def datasource_id_by_name(self, request: web.Request) -> web.Response:
        record = await self._by_name(request)
        return web.json_response({"id": stable_datasource_id(record.key)})

    async def datasource_by_id(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit() or len(raw) > 19:
            raise GatewayError(400, f"id is invalid: {raw[:40]!r} is not a datasource id "
                                    "(a number; GET /api/datasources lists them)",
                               "datasource.badId")
        wanted = int(raw)
        record = await self._one(
            request, [r for r in self._records() if stable_datasource_id(r.key) == wanted],
            f"id {wanted}")
        return web.json_response(datasource_dto(record, self._type(record), self._org_id))

    async def health(self, request: web.Request) -> web.Response:
        """Grafana's /api/health (no token needed, as in Grafana): ``database`` is the
        routing table's readiness, ``version`` the Grafana version plugins are told."""
        ready = self.gateway.synced and not self.gateway.draining
        return web.json_response(
            {"commit": f"plugin-operator-{__version__}",
             "database": "ok" if ready else "failing",
             "version": self.gateway.config.context.grafana_version},
            status=200 if ready else 503)

    async def frontend_settings(self, request: web.Request) -> web.Response:
        """Only ``buildInfo`` of Grafana's frontend settings: clients (grafana-client's
        ``health.check``) read the version there. No datasources or plugins are listed, so
        no token is needed."""
        version = self.gateway.config.context.grafana_version
        return web.json_response({"buildInfo": {
            "version": version, "commit": f"plugin-operator-{__version__}",
            "edition": "Open Source", "env": "production", "buildstamp": 0,
            "latestVersion": "", "hasUpdate": False, "hideVersion": False}})

    async def _readable_plugins(self, request: web.Request) -> list[PluginRecord]:
        identity = await self.gateway.identity(request)
        readable = []
        for plugin in sorted(self.gateway.table.plugins.values(),
                             key=lambda p: (p.spec.plugin_id, str(p.key))):
            if await self.gateway.gatekeeper.allowed(
                    identity, access.read_plugin(plugin.key.namespace, plugin.key.name)):
                readable.append(plugin)
        return readable

    async def plugin_errors(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"pluginId": p.spec.plugin_id, "errorCode": plugin_error_code(p),
             "pluginType": p.info.type}
            for p in await self._readable_plugins(request) if p.phase is Phase.REJECTED])

    async def plugin_settings(self, request: web.Request) -> web.Response:
        plugin = await self.gateway.app_plugin(request, request.match_info["plugin_id"],
                                               access.read_plugin)
        if plugin.phase is Phase.REJECTED:
            raise GatewayError(404, f"Plugin not found: {plugin.spec.plugin_id} was rejected "
                                    f"({plugin.message or 'see kubectl describe plugin'})",
                               "plugin.rejected")
        return web.json_response(plugin_settings(plugin))

