"""A small generic list+watch cache over one resource collection, yielding typed events.

It lists, then watches from the list's resourceVersion with bookmarks, resumes from the
last version seen after a dropped connection, and relists from scratch when the apiserver
says the version is too old (410 Gone), reporting the full set again as one RESYNC event.
"""

# `timeout` parameters are server-side watch windows and bounded waits, not ad-hoc limits.

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from plugin_operator.kube.rest import ApiError, KubeApi

log = logging.getLogger("plugin_operator.kube.informer")

WATCH_WINDOW_SECONDS = 290  # the apiserver ends watches after at most this; we then resume
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
MAX_EVENT_BYTES = 16 << 20  # far above any object the apiserver stores


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"  # ``objects`` holds the whole collection after a (re)list


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Mapping[str, Any] = field(default_factory=dict)
    objects: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Collection:
    """Where a collection lives: ``/api/v1`` + ``pods``, or ``/apis/<group>/<version>`` +
    plural; ``namespace`` None for all namespaces."""

    api_prefix: str
    plural: str
    namespace: str | None = None
    label_selector: str = ""
    field_selector: str = ""

    def path(self) -> str:
        where = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{self.api_prefix}{where}/{self.plural}"

    def selectors(self) -> list[tuple[str, str]]:
        query = []
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        if self.field_selector:
            query.append(("fieldSelector", self.field_selector))
        return query


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """A watch stream's lines, one JSON event each. Not StreamReader.readline: it refuses
    lines over 512 KiB, and one event holds a whole object (up to etcd's 1.5 MiB limit, more
    as JSON)."""
    pending = bytearray()
    async for chunk in stream.iter_any():
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end])
            del pending[:end + 1]
            if line.strip():
                yield line
        if len(pending) > MAX_EVENT_BYTES:
            raise ValueError(f"a watch event longer than {MAX_EVENT_BYTES} bytes")
    if pending.strip():
        yield bytes(pending)


class GoneError(Exception):
    """The resourceVersion we watch from is too old: relist."""


class Informer:
    def __init__(self, api: KubeApi, collection: Collection,
                 watch_window: int = WATCH_WINDOW_SECONDS) -> None:
        self.api = api
        self.collection = collection
        self.watch_window = watch_window
        self.resource_version = ""

    async def _list(self) -> WatchEvent:
        listed = await self.api.request("GET", self.collection.path(),
                                        query=self.collection.selectors())
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        kind = str(listed.get("kind", "")).removesuffix("List")
        api_version = str(listed.get("apiVersion", ""))
        items = []
        for item in listed.get("items") or ():
            # List items come without kind/apiVersion; watch events carry them. Make both
            # look the same to consumers.
            items.append({"apiVersion": api_version, "kind": kind, **item})
        return WatchEvent(EventType.RESYNC, objects=tuple(items))

    async def _watch(self) -> AsyncIterator[WatchEvent]:
        query = [*self.collection.selectors(), ("watch", "true"),
                 ("allowWatchBookmarks", "true"), ("resourceVersion", self.resource_version),
                 ("timeoutSeconds", str(self.watch_window))]
        try:
            response = await self.api.open("GET", self.collection.path(), query=query,
                                           request_timeout=self.watch_window + 30)
        except ApiError as exc:
            if exc.status == 410:
                raise GoneError from exc
            raise
        try:
            async for line in _lines(response.content):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise GoneError
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("reason", "")),
                                   str(obj.get("message", "")))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.resource_version = str(version)
                if kind == "BOOKMARK":
                    continue
                yield WatchEvent(EventType(kind), obj)
        finally:
            response.release()

    async def events(self) -> AsyncIterator[WatchEvent]:
        """RESYNC first, then changes, for ever (cancel the consumer to stop)."""
        failures = 0
        need_list = True
        while True:
            try:
                if need_list:
                    yield await self._list()
                    need_list = False
                async for event in self._watch():
                    failures = 0
                    yield event
            except GoneError:
                log.info("watch of %s expired; relisting", self.collection.path())
                need_list = True
            except (TimeoutError, ApiError, OSError, ValueError, aiohttp.ClientError) as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s); retrying in %.1fs",
                            self.collection.path(), exc, delay)
                if isinstance(exc, ApiError) and exc.status == 410:
                    need_list = True
                await asyncio.sleep(delay)
