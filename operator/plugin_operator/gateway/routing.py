"""The routing table: datasource uid -> settings (with secure data) -> ready endpoints.

Fed with cluster objects by ``watch`` (or a static file); answers lookups without I/O.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_operator.models import naming
from plugin_operator.models import settings as settings_module
from plugin_operator.models.resources import Mode, ObjectRef, SecretKeyRef
from plugin_operator.models.world import (
    DataSourceRecord,
    GatewayPod,
    PluginRecord,
    PodRecord,
    object_key,
    parse_backend_pod,
    parse_datasource,
    parse_gateway_pod,
    parse_plugin,
    parse_secret,
)
from plugin_operator.protocol.models import AppInstanceSettings, DataSourceInstanceSettings


class Kind(enum.StrEnum):
    PLUGIN = "Plugin"
    DATASOURCE = "DataSourceInstance"
    POD = "Pod"
    GATEWAY_POD = "GatewayPod"
    SECRET = "Secret"


class RouteLookupError(LookupError):
    """Nothing (or more than one thing) matches; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ResolvedDataSource:
    record: DataSourceRecord
    plugin: PluginRecord
    settings: DataSourceInstanceSettings
    endpoints: tuple[str, ...]


def stable_datasource_id(key: ObjectRef) -> int:
    """Grafana's numeric datasource id for a DataSourceInstance (see models.settings)."""
    return settings_module.stable_datasource_id(key.namespace, key.name)


def _resolve_secure(refs: Mapping[str, SecretKeyRef], namespace: str,
                    secrets: Mapping[ObjectRef, Mapping[str, str]], where: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for field_name, ref in refs.items():
        secret = secrets.get(ObjectRef(namespace, ref.name))
        if secret is None or ref.key not in secret:
            raise RouteLookupError(503, f"{where}: secure setting {field_name!r} needs key "
                                     f"{ref.key!r} of Secret {namespace}/{ref.name}, which "
                                     "does not exist (yet)")
        values[field_name] = secret[ref.key]
    return values


class RoutingTable:
    def __init__(self) -> None:
        self.plugins: dict[ObjectRef, PluginRecord] = {}
        self.datasources: dict[ObjectRef, DataSourceRecord] = {}
        self.pods: dict[ObjectRef, PodRecord] = {}
        self.secrets: dict[ObjectRef, dict[str, str]] = {}
        self.gateway_pod = GatewayPod()
        self.generation = 0
        self._by_uid: dict[str, set[ObjectRef]] = defaultdict(set)
        self._pods_by_plugin: dict[ObjectRef, set[ObjectRef]] = defaultdict(set)
        self._resolved: dict[ObjectRef, tuple[int, ResolvedDataSource]] = {}

    # ---- feeding ----

    def apply(self, kind: Kind, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Add, replace (or with ``deleted`` remove) one object. Raises ObjectError for an
        object that cannot be used; the table is then unchanged for that object except that
        a previous good version of it is dropped (a broken spec must not keep routing)."""
        self.generation += 1
        key = object_key(obj)
        if kind is Kind.GATEWAY_POD:
            self.gateway_pod = GatewayPod() if deleted else parse_gateway_pod(obj)
            return
        self._remove(kind, key)
        if deleted:
            return
        if kind is Kind.PLUGIN:
            self.plugins[key] = parse_plugin(obj)
        elif kind is Kind.DATASOURCE:
            record = parse_datasource(obj)
            self.datasources[key] = record
            self._by_uid[record.spec.uid].add(key)
        elif kind is Kind.POD:
            pod = parse_backend_pod(obj)
            if pod.plugin_name:
                self.pods[key] = pod
                self._pods_by_plugin[ObjectRef(key.namespace, pod.plugin_name)].add(key)
        elif kind is Kind.SECRET:
            self.secrets[key] = parse_secret(obj)

    def _remove(self, kind: Kind, key: ObjectRef) -> None:
        if kind is Kind.PLUGIN:
            self.plugins.pop(key, None)
        elif kind is Kind.DATASOURCE:
            old = self.datasources.pop(key, None)
            if old is not None:
                self._by_uid[old.spec.uid].discard(key)
                if not self._by_uid[old.spec.uid]:
                    del self._by_uid[old.spec.uid]
        elif kind is Kind.POD:
            pod = self.pods.pop(key, None)
            if pod is not None:
                self._pods_by_plugin[ObjectRef(key.namespace, pod.plugin_name)].discard(key)
        elif kind is Kind.SECRET:
            self.secrets.pop(key, None)

    def replace_all(self, kind: Kind, objects: list[Mapping[str, Any]]) -> list[str]:
        """A relist: drop every object of ``kind`` and load ``objects``; returns problems."""
        for key in list(self._keys(kind)):
            self._remove(kind, key)
        self.generation += 1
        problems = []
        for obj in objects:
            try:
                self.apply(kind, obj)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def _keys(self, kind: Kind) -> list[ObjectRef]:
        tables: dict[Kind, Mapping[ObjectRef, object]] = {
            Kind.PLUGIN: self.plugins, Kind.DATASOURCE: self.datasources, Kind.POD: self.pods,
            Kind.SECRET: self.secrets}
        return list(tables.get(kind, {}))

    # ---- lookups ----

    def endpoints(self, plugin: PluginRecord) -> tuple[str, ...]:
        """Ready gRPC endpoints of a Plugin, sorted (stable for selection and tests)."""
        if plugin.spec.mode is Mode.SIDECAR:
            port = self.gateway_pod.sidecar_ports.get(plugin.key.name)
            container = naming.sidecar_container_name(plugin.key.name)
            if port is None or container not in self.gateway_pod.ready_containers:
                return ()
            return (f"127.0.0.1:{port}",)
        ready = []
        for pod_key in self._pods_by_plugin.get(plugin.key, ()):
            pod = self.pods[pod_key]
            if pod.ready:
                host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
                ready.append(f"{host}:{naming.GRPC_PORT}")
        return tuple(sorted(ready))

    def datasource(self, uid: str, namespace: str | None = None) -> ResolvedDataSource:
        keys = [k for k in self._by_uid.get(uid, ()) if namespace in (None, k.namespace)]
        if not keys:
            raise RouteLookupError(404, f"Data source not found: no DataSourceInstance with uid "
                                     f"{uid!r}" + (f" in namespace {namespace!r}"
                                                   if namespace else ""))
        if len(keys) > 1:
            where = ", ".join(sorted(str(k) for k in keys))
            raise RouteLookupError(409, f"datasource uid {uid!r} is used by several "
                                     f"DataSourceInstances ({where}); add ?namespace=<ns>")
        key = keys[0]
        cached = self._resolved.get(key)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        resolved = self._resolve(self.datasources[key])
        self._resolved[key] = (self.generation, resolved)
        return resolved

    def _resolve(self, record: DataSourceRecord) -> ResolvedDataSource:
        plugin = self.plugins.get(ObjectRef(record.key.namespace, record.spec.plugin_name))
        if plugin is None:
            raise RouteLookupError(503, f"DataSourceInstance {record.key} refers to Plugin "
                                     f"{record.spec.plugin_name!r}, which does not exist in "
                                     f"namespace {record.key.namespace!r}")
        spec = record.spec
        secure = _resolve_secure(spec.secure_json_data_from, record.key.namespace, self.secrets,
                                 f"DataSourceInstance {record.key}")
        settings = settings_module.datasource_instance_settings(
            record.key.namespace, record.key.name, spec, secure, record.settings_version)
        return ResolvedDataSource(record, plugin, settings, self.endpoints(plugin))

    def plugin_by_id(self, plugin_id: str, namespace: str | None = None) -> PluginRecord:
        found = [p for p in self.plugins.values()
                 if p.spec.plugin_id == plugin_id and namespace in (None, p.key.namespace)]
        if not found:
            raise RouteLookupError(404, f"Plugin not found: no Plugin with pluginId {plugin_id!r}"
                                + (f" in namespace {namespace!r}" if namespace else ""))
        # In one namespace the oldest Plugin with the id serves it, as Grafana keeps the
        # plugin it found first: a second one (an upgrade applied under a new name, a copy)
        # does not take its routes away. Across namespaces the caller must choose.
        owners: dict[str, PluginRecord] = {}
        for plugin in sorted(found, key=lambda p: (p.created or "~", p.key.name)):
            owners.setdefault(plugin.key.namespace, plugin)
        if len(owners) > 1:
            where = ", ".join(sorted(str(p.key) for p in owners.values()))
            raise RouteLookupError(409, f"pluginId {plugin_id!r} is served in several "
                                        f"namespaces ({where}); add ?namespace=<ns>")
        return next(iter(owners.values()))

    def app_settings(self, plugin: PluginRecord) -> AppInstanceSettings:
        secure = _resolve_secure(plugin.spec.app_secure_json_data_from, plugin.key.namespace,
                                 self.secrets, f"Plugin {plugin.key} spec.app")
        json_data = json.dumps(dict(plugin.spec.app_json_data), separators=(",", ":"),
                               sort_keys=True).encode()
        # Plugins have no settings version; a digest of the settings changes exactly when
        # they do, which is all the SDK's instance cache compares.
        digest = hashlib.sha256(json_data + json.dumps(secure, sort_keys=True).encode())
        return AppInstanceSettings(json_data=json_data, decrypted_secure_json_data=secure,
                                   last_updated_ms=int.from_bytes(digest.digest()[:6], "big"))
