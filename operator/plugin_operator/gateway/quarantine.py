"""Queries of death: a query that was being served when its backend died is refused for a
while instead of being replayed onto the next replica.

The gateway cannot know whether the query killed the backend or merely coincided with its
death; refusing the same query for a short time costs little either way, while replaying a
query that crashes plugins would take every replica down one after the other.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from .errors import GatewayError

# Keys that name a query rather than say what it asks: the same panel query keeps its
# fingerprint whatever refId, request id or datasource reference form it arrives with.
_NAMING_KEYS = frozenset({"refId", "requestId", "datasource", "datasourceId"})


def fingerprint(datasource: str, models: Sequence[bytes]) -> bytes:
    """The same datasource asked the same queries (in any order, time range aside), from
    the queries' JSON models. Computed only while something is quarantined or when a
    backend died, so decoding the models again costs nothing on the usual path."""
    parts = []
    for raw in models:
        try:
            model = json.loads(raw)
            kept = {k: v for k, v in model.items() if k not in _NAMING_KEYS}
            parts.append(json.dumps(kept, sort_keys=True, separators=(",", ":")))
        except (RecursionError, ValueError, TypeError, AttributeError):
            parts.append(raw.decode("utf-8", "replace"))  # never fails; still this query
    parts.sort()
    return hashlib.sha256("\0".join([datasource, *parts]).encode(
        "utf-8", "surrogatepass")).digest()


Refusal = Callable[[str, float, float], GatewayError]  # (plugin, seconds, seconds left)


class Quarantine:
    """Fingerprints refused until their time is up; bounded, oldest dropped first."""

    def __init__(self, seconds: float, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic,
                 refusal: Refusal | None = None) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._clock = clock
        self._refusal: Refusal = refusal or quarantined
        self._until: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    def __bool__(self) -> bool:
        """Whether anything is quarantined: while nothing is, callers need not compute
        fingerprints at all. Entries are kept in the order they expire (one duration for
        all), so the expired ones are dropped from the front."""
        entries = self._until
        if entries:
            now = self._clock()
            while entries and next(iter(entries.values()))[0] <= now:
                entries.popitem(last=False)
        return bool(entries)

    def add(self, key: bytes, plugin: str) -> None:
        if self.seconds <= 0:
            return
        self._until[key] = (self._clock() + self.seconds, plugin)
        self._until.move_to_end(key)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def check(self, key: bytes) -> None:
        """Raise the refusal for a quarantined fingerprint; forget expired ones."""
        entry = self._until.get(key)
        if entry is None:
            return
        until, plugin = entry
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return
        raise self._refusal(plugin, self.seconds, left)


def quarantined(plugin: str, seconds: float, left: float) -> GatewayError:
    wait = max(1, math.ceil(left))
    return GatewayError(
        503, f"Query refused: this same query was being served when a backend of plugin "
             f"{plugin!r} stopped, so for {seconds:g} s it is not sent to another replica "
             f"(it may be what crashes the plugin). Retry in {wait} s, or change the query; "
             "the plugin's logs (kubectl logs --previous) tell why the backend stopped",
        "query.quarantined", {"Retry-After": str(wait)})


def still_running(plugin: str, seconds: float, left: float) -> GatewayError:
    """The answer to a query sent again while its timed-out run may still hold a backend."""
    wait = max(1, math.ceil(left))
    return GatewayError(
        503, f"Query refused: this same query ran out of time less than {seconds:g} s ago, "
             f"and a backend of plugin {plugin!r} may still be working on it (plugins need not "
             f"stop when a call is cancelled). Retry in {wait} s, or narrow the query (a "
             "shorter time range, fewer series)", "query.stillRunning", {"Retry-After": str(wait)})


def lost_while_serving(plugin: str, seconds: float) -> GatewayError:
    """The answer for the query that was in progress when its backend died."""
    refused = f"; the same query is refused for the next {seconds:g} s" if seconds > 0 else ""
    return GatewayError(
        502, f"A backend of plugin {plugin!r} stopped while serving this query. It was not "
             "retried on another replica, because the query may be what crashes the plugin"
             f"{refused}. The plugin's logs (kubectl logs --previous) tell why the backend "
             "stopped", "plugin.lostWhileServing")
