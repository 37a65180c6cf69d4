"""Exponential backoff with an injected clock."""

from __future__ import annotations

from plugin_operator.controller.backoff import Backoff
from plugin_operator.controller.config import BackoffSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_doubles_up_to_the_cap() -> None:
    backoff = Backoff(BackoffSettings(initial=1, max=5, reset_after=60), Clock())
    assert [backoff.record_failure("p") for _ in range(5)] == [1, 2, 4, 5, 5]


def test_remaining_counts_down_with_the_clock() -> None:
    clock = Clock()
    backoff = Backoff(BackoffSettings(initial=2, max=60, reset_after=60), clock)
    assert backoff.remaining("p") == 0
    backoff.record_failure("p")
    assert backoff.remaining("p") == 2
    clock.now += 1.5
    assert backoff.remaining("p") == 0.5
    clock.now += 1
    assert backoff.remaining("p") == 0


def test_a_healthy_period_resets_the_failures() -> None:
    clock = Clock()
    backoff = Backoff(BackoffSettings(initial=1, max=60, reset_after=30), clock)
    backoff.record_failure("p")
    backoff.record_failure("p")
    backoff.observe_health("p", healthy=True)
    clock.now += 20
    backoff.observe_health("p", healthy=False)  # interrupted: the healthy run starts again
    clock.now += 1
    backoff.observe_health("p", healthy=True)
    clock.now += 29
    backoff.observe_health("p", healthy=True)
    assert backoff.failures("p") == 2
    clock.now += 1
    backoff.observe_health("p", healthy=True)
    assert backoff.failures("p") == 0
    assert backoff.record_failure("p") == 1


def test_tracks_are_per_plugin() -> None:
    backoff = Backoff(BackoffSettings(), Clock())
    backoff.record_failure("a")
    assert backoff.remaining("b") == 0
