"""Feeding the routing table: from the cluster (list+watch) or from a static file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from plugin_operator.kube.informer import Collection, EventType, Informer, WatchEvent
from plugin_operator.models import naming
from plugin_operator.models.resources import API_VERSION, DATASOURCE_PLURAL, PLUGIN_PLURAL
from plugin_operator.models.world import ObjectError

from .routing import Kind, RoutingTable
from .server import Gateway

log = logging.getLogger("plugin_operator.gateway.watch")


class StaticWorldError(ValueError):
    """The static world file cannot be used; the message says where and why."""


def kind_of(obj: Mapping[str, Any], gateway_pod: str) -> Kind:
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    if kind == "Pod":
        return Kind.GATEWAY_POD if name == gateway_pod else Kind.POD
    try:
        return Kind(str(kind))
    except ValueError:
        raise StaticWorldError(f"object {name!r} has kind {kind!r}; expected one of Plugin, "
                               "DataSourceInstance, Secret, Pod") from None


def load_static_world(path: Path, table: RoutingTable, gateway_pod: str = "") -> None:
    """Load Plugin, DataSourceInstance, Secret and Pod objects from a YAML file (several
    documents, or a List) into ``table``: the gateway without a cluster (tests, benchmarks)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise StaticWorldError(f"cannot read the static world file {path}: {exc}") from exc
    objects: list[Mapping[str, Any]] = []
    for document in documents:
        objects.extend(document.get("items", []) if document.get("kind") == "List"
                       else [document])
    for obj in objects:
        try:
            table.apply(kind_of(obj, gateway_pod), obj)
        except ObjectError as exc:
            raise StaticWorldError(f"{path}: {exc}") from exc


def collections(namespace: str | None, pod_name: str, pod_namespace: str
                ) -> list[tuple[Kind, Collection]]:
    custom = f"/apis/{API_VERSION}"
    chosen = [
        (Kind.PLUGIN, Collection(custom, PLUGIN_PLURAL, namespace)),
        (Kind.DATASOURCE, Collection(custom, DATASOURCE_PLURAL, namespace)),
        (Kind.POD, Collection("/api/v1", "pods", namespace, label_selector=naming.LABEL_PLUGIN)),
        (Kind.SECRET, Collection("/api/v1", "secrets", namespace)),
    ]
    if pod_name and pod_namespace:
        chosen.append((Kind.GATEWAY_POD, Collection("/api/v1", "pods", pod_namespace,
                                                    field_selector=f"metadata.name={pod_name}")))
    return chosen


def apply_event(table: RoutingTable, kind: Kind, event: WatchEvent) -> None:
    if event.type is EventType.RESYNC:
        if kind is Kind.GATEWAY_POD:
            table.apply(kind, event.objects[0] if event.objects else {},
                        deleted=not event.objects)
            return
        for problem in table.replace_all(kind, list(event.objects)):
            log.warning("ignoring %s", problem)
        return
    try:
        table.apply(kind, event.object, deleted=event.type is EventType.DELETED)
    except ObjectError as exc:
        log.warning("ignoring %s", exc)


async def watch_cluster(api: Any, gateway: Gateway, chosen: Sequence[tuple[Kind, Collection]]
                        ) -> None:
    """Keep ``gateway.table`` in step with the cluster; marks the gateway synced once every
    collection has been listed. Runs until cancelled."""
    pending = {kind for kind, _ in chosen}

    async def follow(kind: Kind, collection: Collection) -> None:
        async for event in Informer(api, collection).events():
            apply_event(gateway.table, kind, event)
            if event.type is EventType.RESYNC and kind in pending:
                pending.discard(kind)
                if not pending:
                    gateway.synced = True
                    log.info("routing table synced")
            if kind in (Kind.POD, Kind.GATEWAY_POD, Kind.PLUGIN):
                alive = {e for p in gateway.table.plugins.values()
                         for e in gateway.table.endpoints(p)}
                await gateway.upstream.forget_except(alive)

    async with asyncio.TaskGroup() as group:
        for kind, collection in chosen:
            group.create_task(follow(kind, collection))
