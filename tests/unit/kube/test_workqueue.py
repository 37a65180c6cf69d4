"""The operator's de-duplicating work queue (plugin_operator.controller.workqueue).

What its docstrings promise: many events for one key collapse into one pass, a key is never
reconciled by two workers at once, a key that changes while it is reconciled runs once more
afterwards, ``schedule`` sets when a key's next timed pass is due (the latest request
replaces an earlier one: the pass asking last saw the newest world), ``reconcile`` may ask
for its next pass, a failing pass is retried after a second, and ``close`` drops what is
still scheduled.

The queue has no injectable clock: its timers run on the event loop's. So waits here are
bounded (every wait has a deadline), and "this never happens" is proven with a sentinel key
that is queued, or timed, after the thing that must not happen: the queue is FIFO and the
loop fires timers in time order, so once the sentinel is seen, anything that was going to
run before it has run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from plugin_operator.controller.workqueue import WorkQueue

DEADLINE = 5.0  # seconds: every wait in this file is bounded by this


@dataclass
class Recorder:
    """A ``reconcile`` that records each pass; a pass of a key listed in ``gates`` waits for
    that gate, and ``answers`` give what successive passes of a key return (or raise)."""

    passes: list[str] = field(default_factory=list)
    started_at: dict[str, list[float]] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    answers: dict[str, list[float | Exception | None]] = field(default_factory=dict)

    async def __call__(self, key: str) -> float | None:
        if key in self.active:
            self.overlaps.append(key)
        self.active.add(key)
        self.passes.append(key)
        self.started_at.setdefault(key, []).append(asyncio.get_running_loop().time())
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            answers = self.answers.get(key)
            answer = answers.pop(0) if answers else None
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.active.discard(key)

    def count(self, key: str) -> int:
        return self.passes.count(key)


async def eventually(predicate: Callable[[], bool], what: str,
                     seconds: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting until {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def workers(queue: WorkQueue[str], reconcile: Recorder,
                  count: int = 1) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(queue.run_worker(reconcile)) for _ in range(count)]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        queue.close()
        for result in results:
            # A worker only ever ends by being cancelled.
            assert isinstance(result, asyncio.CancelledError), result


# --- de-duplication and order ----------------------------------------------------------


async def test_a_key_queued_twice_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.add("sentinel")
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["a", "b", "sentinel"]
    assert len(queue) == 0


async def test_keys_are_processed_in_the_order_they_were_first_queued() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ["c", "a", "b", "a", "c", "d"]:
        queue.add(key)
    reconcile = Recorder()
    async with workers(queue, reconcile):
        await eventually(lambda: len(reconcile.passes) == 4, "four passes ran")
        queue.add("sentinel")
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["c", "a", "b", "d", "sentinel"]


async def test_different_keys_are_reconciled_concurrently() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(gates={"a": asyncio.Event(), "b": asyncio.Event()})
    async with workers(queue, reconcile, count=2):
        queue.add("a")
        queue.add("b")
        await eventually(lambda: reconcile.active == {"a", "b"}, "both keys are in a pass")
        reconcile.gates["a"].set()
        reconcile.gates["b"].set()
        await eventually(lambda: not reconcile.active, "both passes ended")
    assert sorted(reconcile.passes) == ["a", "b"]


# --- a key that changes while it is reconciled -----------------------------------------


async def test_a_key_queued_during_its_pass_runs_once_more_afterwards_not_concurrently() -> None:
    queue: WorkQueue[str] = WorkQueue()
    gate = asyncio.Event()
    reconcile = Recorder(gates={"a": gate})
    async with workers(queue, reconcile, count=4):
        queue.add("a")
        await eventually(lambda: reconcile.active == {"a"}, "the first pass of a started")
        # Events for "a" during its pass; three idle workers are waiting for work.
        queue.add("a")
        queue.add("a")
        assert len(queue) == 1
        queue.add("b")
        # The queue is FIFO: had "a" been handed out again, an idle worker would have taken
        # it before "b".
        await eventually(lambda: "b" in reconcile.passes, "b ran")
        assert reconcile.count("a") == 1
        gate.set()
        await eventually(lambda: reconcile.count("a") == 2, "the second pass of a ran")
        await eventually(lambda: not reconcile.active, "the second pass of a ended")
        queue.add("sentinel")
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.overlaps == []
    assert reconcile.count("a") == 2


async def test_a_key_not_queued_again_during_its_pass_runs_only_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile, count=3):
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 1 and not reconcile.active,
                         "a ran")
        queue.add("sentinel")
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["a", "sentinel"]


async def test_a_key_queued_after_its_pass_runs_again() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 1 and not reconcile.active, "a ran")
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 2, "a ran again")


# --- delays -----------------------------------------------------------------------------


async def test_delayed_keys_run_in_the_order_of_their_due_times() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    loop = asyncio.get_running_loop()
    async with workers(queue, reconcile):
        start = loop.time()
        queue.schedule("slow", 0.3)
        queue.schedule("fast", 0.05)
        queue.add("now")
        await eventually(lambda: "slow" in reconcile.passes, "the slow key ran")
    assert reconcile.passes == ["now", "fast", "slow"]
    assert reconcile.started_at["fast"][0] - start >= 0.05
    assert reconcile.started_at["slow"][0] - start >= 0.3


@pytest.mark.parametrize("delay", [0, -1.0])
async def test_a_delay_that_is_not_positive_queues_at_once(delay: float) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.schedule("a", delay)
    assert len(queue) == 1
    reconcile = Recorder()
    async with workers(queue, reconcile):
        await eventually(lambda: reconcile.passes == ["a"], "a ran")


async def test_a_sooner_request_replaces_a_later_one() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.schedule("a", 1.0)
        queue.schedule("a", 0.05)
        queue.schedule("sentinel", 0.5)
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
        # The 1 s request was replaced, not kept: a timer due after it sees no second pass.
        queue.schedule("sentinel", 1.2)
        await eventually(lambda: reconcile.count("sentinel") == 2, "the sentinel ran again")
    assert reconcile.passes == ["a", "sentinel", "sentinel"]


async def test_a_later_request_replaces_a_sooner_one() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.schedule("a", 0.05)
        queue.schedule("a", 0.6)
        queue.schedule("sentinel", 0.3)
        await eventually(lambda: "a" in reconcile.passes, "a ran")
    assert reconcile.passes == ["sentinel", "a"]


async def test_none_cancels_a_scheduled_pass() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.schedule("a", 0.05)
        queue.schedule("a", None)
        queue.schedule("sentinel", 0.3)
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["sentinel"]


async def test_a_pass_replaces_the_timer_an_earlier_pass_asked_for() -> None:
    # The first pass asks to be back in 0.3 s; an event brings a second pass at once, which
    # says "on events only": the first pass's timer must not bring a third.
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(answers={"a": [0.3, None]})
    async with workers(queue, reconcile):
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 1, "a ran")
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 2, "a ran again")
        queue.schedule("sentinel", 0.6)
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["a", "a", "sentinel"]


async def test_an_event_does_not_wait_for_a_scheduled_pass() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        queue.schedule("a", 30)
        queue.add("a")
        await eventually(lambda: reconcile.passes == ["a"], "a ran at once")


async def test_reconcile_asks_for_its_next_pass() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(answers={"a": [0.1, None]})
    async with workers(queue, reconcile):
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 2, "a ran a second time")
        first, second = reconcile.started_at["a"]
        assert second - first >= 0.1
        # None: no pass until the next event; a timer due later proves none is scheduled.
        queue.schedule("sentinel", 0.3)
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["a", "a", "sentinel"]


async def test_a_failing_pass_is_logged_and_retried_after_a_second(
        caplog: pytest.LogCaptureFixture) -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(answers={"a": [RuntimeError("boom"), None]})
    caplog.set_level(logging.ERROR, logger="plugin_operator.controller.workqueue")
    async with workers(queue, reconcile):
        queue.add("a")
        await eventually(lambda: reconcile.count("a") == 2, "the failed pass was retried")
        first, second = reconcile.started_at["a"]
    assert 0.9 <= second - first < DEADLINE
    failures = [r for r in caplog.records if "reconciling a failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


async def test_a_failing_pass_does_not_stop_the_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(answers={"a": [ValueError("bad"), None]})
    async with workers(queue, reconcile):
        queue.add("a")
        queue.add("b")
        await eventually(lambda: "b" in reconcile.passes, "b ran after a failed")
    assert reconcile.passes[:2] == ["a", "b"]


# --- shutdown ---------------------------------------------------------------------------


async def test_close_drops_scheduled_passes() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(answers={"b": [0.1]})
    async with workers(queue, reconcile):
        queue.schedule("a", 0.1)
        queue.add("b")  # asks for another pass in 0.1 s
        await eventually(lambda: reconcile.passes == ["b"] and not reconcile.active,
                         "b ran")
        queue.close()
        queue.schedule("sentinel", 0.4)
        await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
    assert reconcile.passes == ["b", "sentinel"]


async def test_close_keeps_what_is_already_queued() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.close()
    reconcile = Recorder()
    async with workers(queue, reconcile):
        await eventually(lambda: reconcile.passes == ["a"], "a ran")


async def test_a_cancelled_worker_stops_and_releases_its_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    gate = asyncio.Event()
    reconcile = Recorder(gates={"a": gate})
    first = asyncio.create_task(queue.run_worker(reconcile))
    try:
        queue.add("a")
        await eventually(lambda: reconcile.active == {"a"}, "a's pass started")
        queue.add("a")  # changed during the pass that is about to be cancelled
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, DEADLINE)
        assert first.cancelled()
        assert reconcile.active == set()
        # Cancellation is shutdown, not a failure: nothing is scheduled for a retry, and
        # the key is no longer held by the dead worker, so the next worker gets it.
        gate.set()
        async with workers(queue, reconcile):
            await eventually(lambda: reconcile.count("a") == 2, "a ran on the new worker")
            queue.schedule("sentinel", 1.2)
            await eventually(lambda: "sentinel" in reconcile.passes, "the sentinel ran")
        assert reconcile.passes == ["a", "a", "sentinel"]
    finally:
        first.cancel()


async def test_a_worker_waiting_for_work_stops_when_cancelled() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    worker = asyncio.create_task(queue.run_worker(reconcile))
    await asyncio.sleep(0)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(worker, DEADLINE)
    # The queue still works for the workers that remain.
    queue.add("a")
    async with workers(queue, reconcile):
        await eventually(lambda: reconcile.passes == ["a"], "a ran")
