"""Exponential backoff for replacing failed backend pods, one track per Plugin.

Grafana restarts a dead plugin every second forever; we double the wait after each failure
(from ``initial`` up to ``max``) and forget the failures once the plugin has been healthy
for ``reset_after``. This is rate limiting, like a controller work queue's, so it lives in
memory: an operator restart only makes the next replacement come sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plugin_operator.controller.config import BackoffSettings


@dataclass
class _Track:
    failures: int = 0
    last_failure: float = 0.0
    healthy_since: float | None = None


class Backoff:
    def __init__(self, settings: BackoffSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._tracks: dict[str, _Track] = {}

    def delay_after(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.settings.initial * 2 ** (failures - 1), self.settings.max))

    def record_failure(self, key: str) -> float:
        """Count a failure; returns how long to wait before the next replacement."""
        track = self._tracks.setdefault(key, _Track())
        track.failures += 1
        track.last_failure = self.clock()
        track.healthy_since = None
        return self.delay_after(track.failures)

    def remaining(self, key: str) -> float:
        track = self._tracks.get(key)
        if track is None or track.failures == 0:
            return 0.0
        return max(0.0, track.last_failure + self.delay_after(track.failures) - self.clock())

    def observe_health(self, key: str, healthy: bool) -> None:
        """Feed the plugin's health each pass; a long enough healthy run resets the track."""
        track = self._tracks.get(key)
        if track is None:
            return
        now = self.clock()
        if not healthy:
            track.healthy_since = None
        elif track.healthy_since is None:
            track.healthy_since = now
        elif now - track.healthy_since >= self.settings.reset_after:
            del self._tracks[key]

    def failures(self, key: str) -> int:
        track = self._tracks.get(key)
        return track.failures if track else 0

    def forget(self, key: str) -> None:
        self._tracks.pop(key, None)
