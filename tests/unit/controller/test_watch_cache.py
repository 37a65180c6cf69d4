"""The watch cache: what a pass reads instead of a GET must never be older than what the
operator itself last wrote or read, and a deleted object must not come back."""

from __future__ import annotations

from typing import Any

from plugin_operator.controller.watch_cache import (
    LAST_APPLIED,
    TRUST_ANSWER_SECONDS,
    ObjectCache,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def body(version: str, phase: str = "", **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": "ds", "resourceVersion": version, **metadata},
            "status": {"phase": phase}}


def phase(cache: ObjectCache[str]) -> str:
    held = cache.get("ds")
    assert held is not None
    return str(held["status"]["phase"])


def test_keeps_the_watch_copy_without_managed_fields_or_last_applied() -> None:
    cache: ObjectCache[str] = ObjectCache()
    cache.seen("ds", body("5", "A", managedFields=[{"manager": "kubectl"}],
                          annotations={LAST_APPLIED: "{...}", "team": "x"}))
    held = cache.get("ds")
    assert held is not None
    assert "managedFields" not in held["metadata"]
    assert held["metadata"]["annotations"] == {"team": "x"}
    held["status"]["phase"] = "changed by a caller"
    assert phase(cache) == "A"  # each read is a copy of its own


def test_our_write_wins_over_older_events_until_the_watch_brings_it() -> None:
    cache: ObjectCache[str] = ObjectCache()
    cache.seen("ds", body("5", "Old"))
    cache.answered("ds", body("7", "Written"))
    cache.seen("ds", body("6", "Between"))  # queued in the watch before our write
    assert phase(cache) == "Written"
    cache.seen("ds", body("7", "Written"))
    cache.seen("ds", body("8", "Someone else's"))
    assert phase(cache) == "Someone else's"


def test_a_newer_event_ends_the_wait_even_if_ours_was_skipped() -> None:
    cache: ObjectCache[str] = ObjectCache()
    cache.answered("ds", body("7", "Written"))
    cache.seen("ds", body("9", "Later"))  # the watch coalesced 7 and 8 into 9
    assert phase(cache) == "Later"


def test_an_answer_slower_than_the_watch_is_dropped() -> None:
    cache: ObjectCache[str] = ObjectCache()
    cache.seen("ds", body("8", "Watched"))
    cache.answered("ds", body("7", "Slow answer"))
    cache.answered("ds", body("8", "Same version"))
    assert phase(cache) == "Watched"
    cache.seen("ds", body("8", "Watched again"))  # no answer is pending: taken
    assert phase(cache) == "Watched again"


def test_a_deleted_object_is_not_brought_back_by_a_late_answer() -> None:
    clock = Clock()
    cache: ObjectCache[str] = ObjectCache(clock)
    cache.seen("ds", body("5"))
    cache.seen("ds", None)
    cache.answered("ds", body("6", "Written just before the delete"))
    assert cache.get("ds") is None
    clock.now += TRUST_ANSWER_SECONDS + 1
    cache.answered("ds", body("9", "Created again"))
    assert phase(cache) == "Created again"


def test_a_recreated_object_is_kept_again_at_once() -> None:
    cache: ObjectCache[str] = ObjectCache(Clock())
    cache.seen("ds", None)
    cache.seen("ds", body("12", "New"))
    cache.answered("ds", body("13", "Written"))
    assert phase(cache) == "Written"


def test_opaque_versions_trust_the_answer_for_a_while_then_the_watch() -> None:
    clock = Clock()
    cache: ObjectCache[str] = ObjectCache(clock)
    cache.answered("ds", body("b", "Written"))
    cache.seen("ds", body("a", "Cannot be ordered"))
    assert phase(cache) == "Written"
    clock.now += TRUST_ANSWER_SECONDS + 1
    cache.seen("ds", body("c", "Watch again"))
    assert phase(cache) == "Watch again"


def test_forget_leaves_no_tombstone() -> None:
    cache: ObjectCache[str] = ObjectCache(Clock())
    cache.seen("ds", body("3"))
    cache.forget("ds")
    assert cache.get("ds") is None
    cache.answered("ds", body("4", "Read by a pass"))
    assert phase(cache) == "Read by a pass"
    assert len(cache) == 1
