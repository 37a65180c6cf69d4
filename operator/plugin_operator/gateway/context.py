"""PluginContext for each kind of call, filled the way Grafana fills it (protocol.md §6.1)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field

from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.models.world import PluginRecord
from plugin_operator.protocol import convert
from plugin_operator.protocol.models import (
    AppInstanceSettings,
    DataSourceInstanceSettings,
    PluginContext,
    User,
)
from plugin_operator.protocol.stubs import backend_pb2 as pb

from . import access

# Grafana always sends these SQL connection defaults; SQL plugins read them.
DEFAULT_GRAFANA_CONFIG: Mapping[str, str] = {
    "GF_SQL_MAX_OPEN_CONNS_DEFAULT": "100",
    "GF_SQL_MAX_IDLE_CONNS_DEFAULT": "100",
    "GF_SQL_MAX_CONN_LIFETIME_SECONDS_DEFAULT": "14400",
}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def user_agent(grafana_version: str) -> str:
    """``Grafana/<version> (<os>; <arch>)``, the form the SDK parses."""
    arch = _ARCH.get(platform.machine(), platform.machine().lower())
    return f"Grafana/{grafana_version} (linux; {arch})"


@dataclass(frozen=True)
class ContextDefaults:
    """What every call's context carries, from the gateway's configuration."""

    grafana_version: str = DEFAULT_GRAFANA_VERSION
    grafana_config: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GRAFANA_CONFIG))
    org_id: int = 1


def caller(username: str) -> User | None:
    """The signed-in user as plugins see it; None for anonymous access."""
    return User(login=username, name=username) if username else None


def _base(defaults: ContextDefaults, plugin: PluginRecord, user: User | None,
          namespace: str) -> dict[str, object]:
    return {"org_id": defaults.org_id, "plugin_id": plugin.spec.plugin_id, "user": user,
            "grafana_config": dict(defaults.grafana_config),
            "plugin_version": plugin.spec.version,
            "user_agent": user_agent(defaults.grafana_version), "namespace": namespace}


def datasource_context(defaults: ContextDefaults, plugin: PluginRecord,
                       settings: DataSourceInstanceSettings, user: User | None,
                       namespace: str) -> PluginContext:
    return PluginContext(**_base(defaults, plugin, user, namespace),  # type: ignore[arg-type]
                         datasource_instance_settings=settings)


def app_context(defaults: ContextDefaults, plugin: PluginRecord, settings: AppInstanceSettings,
                user: User | None) -> PluginContext:
    return PluginContext(**_base(defaults, plugin, user, plugin.key.namespace),  # type: ignore[arg-type]
                         app_instance_settings=settings)


class DatasourceContextCache:
    """Datasource PluginContexts already in protobuf form, so a query does not rebuild and
    re-encode the same settings every time. The routing table replaces the settings object
    whenever the DataSourceInstance, a Secret it reads or its Plugin changes, so an entry is
    found only for the very objects (the same settings version) it was built from."""

    def __init__(self, defaults: ContextDefaults, max_entries: int = 4096) -> None:
        self.defaults = defaults
        self.max_entries = max_entries
        self._entries: dict[tuple[int, int, str, str],
                            tuple[PluginRecord, DataSourceInstanceSettings, pb.PluginContext]] = {}

    def get(self, plugin: PluginRecord, settings: DataSourceInstanceSettings, username: str,
            namespace: str) -> pb.PluginContext:
        """The message to copy into a request; never modify it."""
        key = (id(plugin), id(settings), username, namespace)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is plugin and entry[1] is settings:
            return entry[2]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # old settings versions go; the live ones come back
        message = convert.plugin_context_to_proto(datasource_context(
            self.defaults, plugin, settings, caller(username), namespace))
        self._entries[key] = (plugin, settings, message)
        return message


def metrics_context(plugin_id: str) -> PluginContext:
    """Grafana fills only pluginId for CollectMetrics."""
    return PluginContext(plugin_id=plugin_id)


# Grafana's tracing headers (clientmiddleware/tracing_header_middleware.go), alerting headers
# (usealertingheaders_middleware.go) and the signed-in user's ID token (forward_id_middleware):
# plugins receive them as ``http_<Header>``. Not the caller's Traceparent: like Grafana, the
# gateway passes trace context in the call's gRPC metadata, naming its own span (tracing.py).
FORWARDED_QUERY_HEADERS = ("X-Query-Group-Id", "X-Panel-Id", "X-Panel-Plugin-Id",
                           "X-Dashboard-Uid", "X-Dashboard-Title", "X-Panel-Title",
                           "X-Datasource-Uid", "X-Grafana-From-Expr", "X-Grafana-Org-Id",
                           "X-Rule-Name", "X-Rule-Uid", "X-Rule-Folder", "X-Rule-Source",
                           "X-Rule-Type", "X-Rule-Version", "X-Rule-Origin", "X-Grafana-Id")
# Sent under their own names, as Grafana's alerting sends them (FromAlert keeps its odd case).
RAW_QUERY_HEADERS = ("FromAlert", "X-Cache-Skip")
OAUTH_HEADERS = ("Authorization", "X-Id-Token")


def header_text(value: str) -> str:
    """A header value as UTF-8 text: bytes that are not UTF-8 become U+FFFD, as Grafana
    sanitizes them before they go into the plugin's protobuf request."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def kept_cookies(cookie_header: str, keep: object) -> str:
    """The caller's cookies named in the datasource's ``jsonData.keepCookies``, in order."""
    if not isinstance(keep, list) or not cookie_header:
        return ""
    names = {str(name) for name in keep}
    kept = []
    for part in cookie_header.split(";"):
        name, sep, _ = part.strip().partition("=")
        if sep and name in names:
            kept.append(part.strip())
    return "; ".join(kept)


def passed_through(incoming: Mapping[str, str], json_data: Mapping[str, object]
                   ) -> dict[str, str]:
    """What the datasource's settings let through under Grafana's raw keys: the cookies
    ``jsonData.keepCookies`` names (``Cookie``) and, with ``jsonData.oauthPassThru``, the
    caller's ``Authorization`` and ``X-Id-Token`` -- but only when the caller sent its
    Kubernetes token in ``X-Plugin-Operator-Authorization``: otherwise ``Authorization`` is
    the gateway's credential and never reaches a plugin."""
    headers: dict[str, str] = {}
    cookies = kept_cookies(incoming.get("Cookie", ""), json_data.get("keepCookies"))
    if cookies:
        headers["Cookie"] = header_text(cookies)
    if json_data.get("oauthPassThru") is True and access.GATEWAY_AUTHORIZATION in incoming:
        for name in OAUTH_HEADERS:
            value = incoming.get(name)
            if value:
                headers[name] = header_text(value)
    return headers


def forwarded_headers(incoming: Mapping[str, str], uid: str, org_id: int,
                      json_data: Mapping[str, object] | None = None) -> dict[str, str]:
    """The headers Grafana's middlewares pass with QueryData and CheckHealth: the tracing,
    alerting and ID headers as ``http_<Header>``, ``FromAlert`` and ``X-Cache-Skip`` raw, and
    what :func:`passed_through` lets through. ``X-Datasource-Uid`` and ``X-Grafana-Org-Id``
    are always set (Grafana's frontend always sends them)."""
    headers = {f"http_{name}": header_text(incoming[name])
               for name in FORWARDED_QUERY_HEADERS if incoming.get(name)}
    headers["http_X-Datasource-Uid"] = uid
    headers["http_X-Grafana-Org-Id"] = str(org_id)
    headers.update({name: header_text(incoming[name])
                    for name in RAW_QUERY_HEADERS if incoming.get(name)})
    headers.update(passed_through(incoming, json_data or {}))
    return headers
