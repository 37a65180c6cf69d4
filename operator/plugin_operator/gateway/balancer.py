"""Least-in-flight endpoint selection and per-plugin admission limits (no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager


class LoadTracker:
    """Counts calls in flight per endpoint and requests in flight per plugin."""

    def __init__(self, max_in_flight_per_plugin: int) -> None:
        if max_in_flight_per_plugin < 1:
            raise ValueError("max in flight per plugin must be at least 1")
        self.max_in_flight_per_plugin = max_in_flight_per_plugin
        self.endpoint_in_flight: dict[str, int] = defaultdict(int)
        self.plugin_in_flight: dict[str, int] = defaultdict(int)
        self._turn = 0

    def pick(self, endpoints: Sequence[str], exclude: Iterable[str] = ()) -> str | None:
        """The endpoint with the fewest calls in flight; ties rotate so that idle replicas
        share the load instead of the first one taking it all."""
        if len(endpoints) == 1 and not exclude:  # one replica, first try: nothing to choose
            self._turn += 1
            return endpoints[0]
        skip = set(exclude)
        candidates = [e for e in endpoints if e not in skip]
        if not candidates:
            return None
        self._turn += 1
        fewest = min(self.endpoint_in_flight.get(e, 0) for e in candidates)
        tied = [e for e in candidates if self.endpoint_in_flight.get(e, 0) == fewest]
        return tied[self._turn % len(tied)]

    def call_started(self, endpoint: str) -> None:
        self.endpoint_in_flight[endpoint] += 1

    def call_ended(self, endpoint: str) -> None:
        self.endpoint_in_flight[endpoint] -= 1
        if not self.endpoint_in_flight[endpoint]:
            del self.endpoint_in_flight[endpoint]

    @contextmanager
    def calling(self, endpoint: str) -> Iterator[None]:
        """A call in flight for the block (for long calls; the per-query path uses
        call_started/call_ended, which cost no generator)."""
        self.call_started(endpoint)
        try:
            yield
        finally:
            self.call_ended(endpoint)

    def try_admit(self, plugin: str) -> bool:
        """Count a request for ``plugin`` unless it already has the maximum in flight."""
        if self.plugin_in_flight[plugin] >= self.max_in_flight_per_plugin:
            return False
        self.plugin_in_flight[plugin] += 1
        return True

    def release(self, plugin: str) -> None:
        self.plugin_in_flight[plugin] -= 1
        if self.plugin_in_flight[plugin] <= 0:
            del self.plugin_in_flight[plugin]

    def total_in_flight(self) -> int:
        return sum(self.plugin_in_flight.values())
