"""Instance management with the Go SDK's semantics.

One instance per datasource (``<id>#<tenant>#<proxyHash>``) or app (``<pluginId>#<orgId>``
with an optional ``<tenant>#`` prefix). An instance is rebuilt when ``lastUpdatedMS`` or
``grafanaConfig`` changes; the replaced one is disposed once the calls that were using it
have finished (the Go SDK approximates this with a 5 s timer).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from plugin_operator.protocol.models import PluginContext

_PROXY_CLIENT_KEY = "GF_SECURE_SOCKS_DATASOURCE_PROXY_CLIENT_KEY_VAL"

InstanceFactory = Callable[[PluginContext], Awaitable[Any] | Any]


def instance_key(ctx: PluginContext, tenant_id: str = "") -> str:
    """The cache key of the instance serving ``ctx`` (ValueError if it has no instance)."""
    if ctx.datasource_instance_settings is not None:
        proxy_key = ctx.grafana_config.get(_PROXY_CLIENT_KEY, "")
        return f"{ctx.datasource_instance_settings.id}#{tenant_id}#{proxy_key[-4:]}"
    if ctx.app_instance_settings is not None:
        base = f"{ctx.plugin_id}#{ctx.org_id}"
        return f"{tenant_id}#{base}" if tenant_id else base
    raise ValueError("the request's plugin context has neither datasource nor app settings, "
                     "so no plugin instance can serve it")


def _updated(ctx: PluginContext) -> int:
    settings = ctx.datasource_instance_settings or ctx.app_instance_settings
    return settings.last_updated_ms if settings is not None else 0


@dataclass
class _Entry:
    instance: Any
    updated: int
    grafana_config: Mapping[str, str]
    in_flight: int = 0
    retired: bool = False
    disposed: bool = field(default=False)


async def _dispose(instance: Any) -> None:
    dispose = getattr(instance, "dispose", None)
    if dispose is None:
        return
    result = dispose()
    if inspect.isawaitable(result):
        await result


class InstanceManager:
    """Creates, caches, rebuilds and disposes plugin instances."""

    def __init__(self, factory: InstanceFactory) -> None:
        self._factory = factory
        self._entries: dict[str, _Entry] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def _current(self, ctx: PluginContext, tenant_id: str) -> _Entry:
        key = instance_key(ctx, tenant_id)
        updated = _updated(ctx)
        entry = self._entries.get(key)
        if entry is not None and entry.updated == updated and \
                entry.grafana_config == ctx.grafana_config:
            return entry
        async with self._lock:  # double-checked: one creation per key
            entry = self._entries.get(key)
            if entry is not None and entry.updated == updated and \
                    entry.grafana_config == ctx.grafana_config:
                return entry
            created = self._factory(ctx)
            instance = await created if inspect.isawaitable(created) else created
            fresh = _Entry(instance, updated, dict(ctx.grafana_config))
            self._entries[key] = fresh
            if entry is not None:
                entry.retired = True
                await self._maybe_dispose(entry)
            return fresh

    async def _maybe_dispose(self, entry: _Entry) -> None:
        if entry.retired and entry.in_flight == 0 and not entry.disposed:
            entry.disposed = True
            await _dispose(entry.instance)

    @asynccontextmanager
    async def use(self, ctx: PluginContext, tenant_id: str = "") -> AsyncIterator[Any]:
        """The instance for ``ctx``, kept alive for the duration of the ``async with``."""
        entry = await self._current(ctx, tenant_id)
        entry.in_flight += 1
        try:
            yield entry.instance
        finally:
            entry.in_flight -= 1
            await self._maybe_dispose(entry)

    async def get(self, ctx: PluginContext, tenant_id: str = "") -> Any:
        """The instance for ``ctx`` without tracking the call (for quick lookups)."""
        return (await self._current(ctx, tenant_id)).instance

    async def dispose_all(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.retired = True
            await self._maybe_dispose(entry)
