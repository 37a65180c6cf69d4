"""PluginContext for each kind of call, filled the way Grafana fills it (protocol.md §6.1)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field

from plugin_operator.protocol import convert
from plugin_operator.protocol.models import (
    AppInstanceSettings,
    DataSourceInstanceSettings,
    PluginContext,
    User,
)
from plugin_operator.protocol.stubs import backend_pb2 as pb

from .errors import utf8_text
from .world import PluginRecord

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

    grafana_version: str = "12.0.0"
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


FORWARDED_QUERY_HEADERS = ("X-Dashboard-Uid", "X-Panel-Id", "X-Query-Group-Id",
                           "X-Datasource-Uid", "X-Grafana-From-Expr", "X-Grafana-Org-Id",
                           "X-Rule-Uid", "Traceparent")


def forwarded_headers(incoming: Mapping[str, str], uid: str, org_id: int) -> dict[str, str]:
    """The ``http_``-prefixed headers Grafana's middleware passes with queries. The caller's
    Authorization header is the gateway's credential, never the plugin's, so it stays here."""
    headers = {f"http_{name}": utf8_text(incoming[name], f"header {name}")
               for name in FORWARDED_QUERY_HEADERS if name in incoming}
    headers["http_X-Datasource-Uid"] = uid
    headers["http_X-Grafana-Org-Id"] = str(org_id)
    return headers
