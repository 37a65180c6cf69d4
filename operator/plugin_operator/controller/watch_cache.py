"""Objects as the watch last delivered them, so a reconcile pass need not GET what it reads.

Two things make a watch copy unsafe to read as it is, and both are handled here:

- **Our own write is newer than the watch.** A pass writes a status; the watch event that
  carries the write comes a moment later. A pass in between would read the old status and
  write the same change again (or compute conditions against an old one). So the answer
  to our write is kept too, and older watch events are not taken over it until the watch
  catches up.
- **A deletion the watch saw before our answer arrived.** An answer read or written just
  before the object went must not bring it back: a deleted object's key refuses answers
  for a while.
- **Memory.** Thousands of objects are kept. Each is stored as compact JSON without
  ``managedFields`` and kubectl's last-applied annotation (most of a small object's bytes),
  and decoded afresh on each read, so no caller can change the stored copy either.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from plugin_operator.models.resources import ObjectRef

K = TypeVar("K")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# A write whose watch event never arrives (the watch was re-listed past it, on an apiserver
# whose resourceVersions are not numbers) stops shadowing the watch after this long; a
# deleted object's key refuses answers for as long.
TRUST_ANSWER_SECONDS = 30.0


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without the metadata nobody reconciles on."""
    copy = dict(body)
    metadata = dict(copy.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    copy["metadata"] = metadata
    return copy


def _version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _newer(version: str, than: str) -> bool:
    """Whether ``version`` is known to come after ``than``. resourceVersions are opaque to
    clients; etcd's are revision numbers, and only then can two be ordered."""
    return version.isdigit() and than.isdigit() and int(version) > int(than)


class ObjectCache(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bodies: dict[K, tuple[str, bytes]] = {}  # key -> (resourceVersion, JSON)
        # key -> (resourceVersion an answer carried, when), until the watch brings it
        self._answered: dict[K, tuple[str, float]] = {}
        self._deleted: OrderedDict[K, float] = OrderedDict()  # key -> when, oldest first

    def __len__(self) -> int:
        return len(self._bodies)

    def seen(self, key: K, body: Mapping[str, Any] | None) -> None:
        """A watch event (``body`` None: the object was deleted)."""
        now = self._clock()
        if body is None:
            self._bodies.pop(key, None)
            self._answered.pop(key, None)
            self._deleted[key] = now
            self._deleted.move_to_end(key)
            self._forget_deletions(now)
            return
        self._deleted.pop(key, None)
        answered = self._answered.get(key)
        if answered is not None:
            version, since = answered
            event_version = _version(body)
            if not (event_version == version or _newer(event_version, version)
                    or now - since > TRUST_ANSWER_SECONDS):
                return  # an event from before the answer: the answer is newer
            del self._answered[key]
        self._bodies[key] = (_version(body), _encode(body))

    def forget(self, key: K) -> None:
        """Stop keeping an object that still exists (no one reads it any more)."""
        self._bodies.pop(key, None)
        self._answered.pop(key, None)

    def answered(self, key: K, body: Mapping[str, Any]) -> None:
        """The object as the apiserver answered a GET or a write of ours: newer than the
        watch has told, until the watch catches up."""
        now = self._clock()
        self._forget_deletions(now)
        if key in self._deleted:
            return
        version = _version(body)
        held = self._bodies.get(key, ("", b""))[0]
        if held and (held == version or _newer(held, version)):
            return  # the watch was faster than our reply
        self._bodies[key] = (version, _encode(body))
        self._answered[key] = (version, now)

    def _forget_deletions(self, now: float) -> None:
        while self._deleted:
            key, when = next(iter(self._deleted.items()))
            if now - when <= TRUST_ANSWER_SECONDS:
                return
            del self._deleted[key]

    def get(self, key: K) -> dict[str, Any] | None:
        stored = self._bodies.get(key)
        return None if stored is None else json.loads(stored[1])


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(trimmed(body), separators=(",", ":")).encode()


@dataclass(frozen=True)
class WatchCaches:
    """What reconcile passes read, as the operator's watches keep it (handlers.py). Secrets
    and ConfigMaps are kept only while a DataSourceInstance or a Plugin refers to them."""

    datasources: ObjectCache[ObjectRef] = field(default_factory=ObjectCache)
    plugins: ObjectCache[ObjectRef] = field(default_factory=ObjectCache)
    secrets: ObjectCache[ObjectRef] = field(default_factory=ObjectCache)
    configmaps: ObjectCache[ObjectRef] = field(default_factory=ObjectCache)


async def read_through(cache: ObjectCache[K] | None, key: K,
                       fetch: Callable[[], Awaitable[dict[str, Any] | None]]
                       ) -> dict[str, Any] | None:
    """``key`` from ``cache``, or else from ``fetch`` (a GET), whose answer is then kept.
    Pass a cache only if a watch feeds it: nothing else would ever refresh the answer."""
    held = cache.get(key) if cache is not None else None
    if held is not None:
        return held
    found = await fetch()
    if found is not None and cache is not None:
        cache.answered(key, found)
    return found
