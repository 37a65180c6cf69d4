"""Reconcile one DataSourceInstance: its Plugin, its Secrets, its settings version, its health.

The health check runs against a ready backend with the same PluginContext the gateway
sends, at ``spec.healthCheck.interval`` and whenever the settings change.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from plugin_operator.controller import metrics
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.endpoints import ready_endpoints
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.health_hints import network_hint
from plugin_operator.controller.planner import parse_time
from plugin_operator.controller.watch_cache import ObjectCache, WatchCaches, read_through
from plugin_operator.kube.rest import KubeApi, NotFoundError, core_path, group_path
from plugin_operator.models.resources import (
    API_VERSION,
    DATASOURCE_PLURAL,
    PLUGIN_PLURAL,
    DataSourceSpec,
    ObjectRef,
    SpecError,
    parse_datasource_spec,
)
from plugin_operator.models.settings import datasource_instance_settings, settings_digest
from plugin_operator.models.status import (
    DataSourceStatus,
    Health,
    PluginStatus,
    timestamp,
    transition,
)
from plugin_operator.protocol.client import PluginClient
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import CheckHealthRequest, HealthStatus, PluginContext

log = logging.getLogger(__name__)
# A backend becoming ready changes its Plugin's status, whose watch event brings this
# DataSourceInstance back at once; the timer only covers a lost event.
NO_BACKEND_RECHECK_SECONDS = 60.0
# A Plugin the operator has not written a status for yet: its first status brings this
# DataSourceInstance back. The timer and the patience only cover a Plugin whose pass keeps
# failing (after a start with thousands of Plugins, the last ones wait minutes in line).
PLUGIN_UNSEEN_RECHECK_SECONDS = 60.0
PLUGIN_UNSEEN_PATIENCE_SECONDS = 600.0


class SecretMissingError(Exception):
    pass


def _unknown(before: Health | None, message: str, now: datetime) -> Health:
    """No check could run, for ``message``'s reason. The same reason seen again keeps its
    first time: a status rewritten only for a newer timestamp would be a write per object
    per recheck, thousands a minute in a large cluster, saying nothing new."""
    if before is not None and before.status == "UNKNOWN" and before.message == message \
            and not before.details:
        return before
    return Health("UNKNOWN", message, timestamp(now))


class DataSourceService:
    def __init__(self, kube: KubeApi, config: OperatorConfig, events: EventRecorder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 caches: WatchCaches | None = None) -> None:
        """``caches``: the objects as the watches last delivered them, read instead of a
        GET; what they do not hold yet (just after a start) is read from the apiserver.
        Without them, every pass reads everything from the apiserver."""
        self.kube = kube
        self.config = config
        self.events = events
        self.clock = clock
        self.caches = caches
        self._waiting: dict[ObjectRef, datetime] = {}  # -> since when, for its Plugin

    async def _read(self, cache: ObjectCache[ObjectRef] | None, key: ObjectRef,
                    path: str) -> dict[str, Any] | None:
        return await read_through(cache, key, lambda: self.kube.get_or_none(path))

    def _path(self, key: ObjectRef, subresource: str | None = None) -> str:
        return group_path(API_VERSION, key.namespace, DATASOURCE_PLURAL, key.name, subresource)

    async def reconcile(self, key: ObjectRef) -> float | None:
        obj = await self._read(self.caches.datasources if self.caches else None, key,
                               self._path(key))
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            metrics.LAST_SEEN.datasource_health.pop(str(key), None)
            self._waiting.pop(key, None)
            return None
        with metrics.RECONCILE_SECONDS.labels("DataSourceInstance").time():
            try:
                result = await self._reconcile(key, obj)
            except Exception:
                metrics.RECONCILES.labels("DataSourceInstance", "error").inc()
                raise
        metrics.RECONCILES.labels("DataSourceInstance", "ok").inc()
        return result

    async def _reconcile(self, key: ObjectRef, obj: dict[str, Any]) -> float | None:
        now = self.clock()
        generation = int(obj["metadata"].get("generation", 1))
        status = DataSourceStatus.parse(obj.get("status"))
        previous = status.conditions
        try:
            spec = parse_datasource_spec(obj.get("spec") or {}, key.name)
        except SpecError as exc:
            return await self._unhealthy(key, obj, "SpecInvalid", f"{exc}", plugin_ready=None)
        plugin = await self._read(self.caches.plugins if self.caches else None,
                                  ObjectRef(key.namespace, spec.plugin_name),
                                  group_path(API_VERSION, key.namespace, PLUGIN_PLURAL,
                                             spec.plugin_name))
        if plugin is None or plugin["metadata"].get("deletionTimestamp"):
            return await self._unhealthy(
                key, obj, "PluginNotFound",
                f"Plugin {spec.plugin_name!r} does not exist in namespace {key.namespace!r}; "
                "create it or fix spec.pluginRef.name", plugin_ready=False)
        plugin_status = PluginStatus.parse(plugin.get("status"))
        if plugin_status.observed_generation is None and not obj.get("status"):
            # The operator has not looked at the Plugin yet (just after a start, thousands
            # at once): a status now would only be replaced when it has.
            since = self._waiting.setdefault(key, now)
            if (now - since).total_seconds() < PLUGIN_UNSEEN_PATIENCE_SECONDS:
                return PLUGIN_UNSEEN_RECHECK_SECONDS
        self._waiting.pop(key, None)
        plugin_type = plugin_status.plugin.type if plugin_status.plugin else ""
        plugin_id = str((plugin.get("spec") or {}).get("pluginId", ""))
        if plugin_type and plugin_type != "datasource":
            return await self._unhealthy(
                key, obj, "NotADatasource",
                f"Plugin {spec.plugin_name!r} ({plugin_id}) is a {plugin_type} plugin, not a "
                "datasource; point spec.pluginRef at a datasource plugin", plugin_ready=False)
        try:
            secure = await self._secure_values(key.namespace, spec)
        except SecretMissingError as exc:
            return await self._unhealthy(key, obj, "SecretNotFound", str(exc),
                                         plugin_ready=None)
        digest = settings_digest(obj.get("spec") or {}, secure)
        version = status.settings_version or 0
        changed = digest != status.settings_hash
        if changed:
            # lastUpdatedMS must move forward, even if two changes land in one millisecond.
            version = max(int(now.timestamp() * 1000), version + 1)
        endpoints = await ready_endpoints(self.kube, self.config, key.namespace,
                                          spec.plugin_name, plugin)
        settled = DataSourceStatus(observed_generation=generation, plugin_id=plugin_id,
                                   settings_version=version, settings_hash=digest)
        if not endpoints:
            message = (f"Plugin {spec.plugin_name!r} has no ready backend "
                       f"(phase {plugin_status.phase or 'Pending'})")
            await self._write(key, obj, replace(
                settled, health=_unknown(status.health, message, now),
                conditions=(
                    transition(previous, "PluginReady", False, "NoReadyBackend", message,
                               generation, now),
                    transition(previous, "Healthy", None, "NoReadyBackend", message,
                               generation, now))))
            return NO_BACKEND_RECHECK_SECONDS
        interval = spec.health_check.interval_seconds
        health = status.health
        last = parse_time(health.checked_at if health else None)
        due = (changed or generation != status.observed_generation
               or health is None or health.status == "UNKNOWN"
               or last is None or (now - last).total_seconds() >= interval)
        if spec.health_check.enabled and due:
            settings = datasource_instance_settings(key.namespace, key.name, spec, secure,
                                                    version)
            context = PluginContext(org_id=1, plugin_id=plugin_id,
                                    datasource_instance_settings=settings,
                                    plugin_version=str((plugin.get("spec") or {})
                                                       .get("version", "")))
            checked = replace(await self._check(endpoints, context), checked_at=timestamp(now))
            metrics.HEALTH_CHECKS.labels(checked.status).inc()
            self._report_change(obj, health, checked)
            health, last = checked, now
        health_status = health.status if health else "UNKNOWN"
        health_message = health.message if health else ""
        failed_reason = "CheckFailed"
        if health_status != "OK" and (hint := network_hint(health_message)):
            failed_reason, health_message = hint.reason, hint.explain(health_message)
        enabled = spec.health_check.enabled
        await self._write(key, obj, replace(settled, health=health, conditions=(
            transition(previous, "PluginReady", True, "BackendReady",
                       f"{len(endpoints)} ready backend(s) of Plugin {spec.plugin_name!r}",
                       generation, now),
            transition(previous, "Healthy", None if not enabled else health_status == "OK",
                       "Disabled" if not enabled else
                       ("CheckPassed" if health_status == "OK" else failed_reason),
                       health_message, generation, now))))
        if not enabled:
            return None
        elapsed = (now - last).total_seconds() if last else 0.0
        return max(1.0, interval - elapsed)

    def _report_change(self, obj: Mapping[str, Any], old: Health | None, new: Health) -> None:
        """An event when the health changes, or a network failure's message does."""
        hint = network_hint(new.message) if new.status != "OK" else None
        old_status = old.status if old else None
        if old_status == new.status and not (hint and (old and old.message) != new.message):
            return
        self.events.emit(obj, "Normal" if new.status == "OK" else "Warning",
                         "Healthy" if new.status == "OK" else
                         hint.reason if hint else "Unhealthy",
                         f"CheckHealth: {new.status}: "
                         + (hint.explain(new.message) if hint else new.message))

    async def _secure_values(self, namespace: str, spec: DataSourceSpec) -> dict[str, str]:
        values: dict[str, str] = {}
        secrets: dict[str, Mapping[str, str] | None] = {}
        for field_name, ref in spec.secure_json_data_from.items():
            if ref.name not in secrets:
                secret = await self._read(self.caches.secrets if self.caches else None,
                                          ObjectRef(namespace, ref.name),
                                          core_path(namespace, "secrets", ref.name))
                secrets[ref.name] = None if secret is None else (secret.get("data") or {})
            data = secrets[ref.name]
            if data is None:
                raise SecretMissingError(f"secure setting {field_name!r} refers to Secret "
                                    f"{namespace}/{ref.name}, which does not exist; create it")
            if ref.key not in data:
                raise SecretMissingError(f"secure setting {field_name!r} refers to key {ref.key!r} "
                                    f"of Secret {namespace}/{ref.name}, which has no such key "
                                    f"(it has: {', '.join(sorted(data)) or 'none'})")
            values[field_name] = base64.b64decode(data[ref.key]).decode(errors="replace")
        return values

    async def _check(self, endpoints: list[str], context: PluginContext) -> Health:
        last_error = ""
        for target in endpoints[:2]:
            try:
                async with PluginClient(target, timeout=self.config.health_check_timeout) as cl:
                    result = await cl.check_health(CheckHealthRequest(plugin_context=context))
            except PluginError as exc:
                last_error = f"CheckHealth on {target} failed: {exc}"
                continue
            details = None
            if result.json_details:
                try:
                    parsed = json.loads(result.json_details)
                    details = parsed if isinstance(parsed, dict) else {"value": parsed}
                except ValueError:
                    details = {"raw": result.json_details.decode(errors="replace")}
            return Health(HealthStatus(result.status).name, result.message, details=details)
        return Health("ERROR", last_error)

    async def _unhealthy(self, key: ObjectRef, obj: dict[str, Any], reason: str,
                         message: str, plugin_ready: bool | None) -> float:
        now = self.clock()
        generation = int(obj["metadata"].get("generation", 1))
        status = DataSourceStatus.parse(obj.get("status"))
        previous = status.conditions
        if (status.health.message if status.health else None) != message:
            self.events.emit(obj, "Warning", reason, message)
        await self._write(key, obj, replace(
            status, observed_generation=generation,
            health=_unknown(status.health, message, now),
            conditions=(
                transition(previous, "PluginReady", plugin_ready, reason, message, generation,
                           now),
                transition(previous, "Healthy", False, reason, message, generation, now))))
        return 30.0

    async def _write(self, key: ObjectRef, obj: Mapping[str, Any],
                     new_status: DataSourceStatus) -> None:
        metrics.LAST_SEEN.datasource_health[str(key)] = (
            new_status.health.status if new_status.health else "UNKNOWN")
        patch = new_status.patch(obj.get("status"))
        if patch is None:
            return
        try:
            written = await self.kube.merge_patch(self._path(key, "status"), {"status": patch})
        except NotFoundError:
            return
        if self.caches is not None:
            self.caches.datasources.answered(key, written)
