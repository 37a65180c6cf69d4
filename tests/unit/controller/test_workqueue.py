"""The work queue: one pass per burst of events, and the latest pass sets the next timer."""

from __future__ import annotations

import asyncio

from plugin_operator.controller.workqueue import WorkQueue


async def _passes(answers: list[float | None], events_during: int = 0,
                  run_for: float = 0.3) -> list[float]:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen: list[float] = []

    async def reconcile(key: str) -> float | None:
        seen.append(loop.time() - started)
        if len(seen) == 1:
            for _ in range(events_during):
                queue.add(key)  # changes while the pass runs: one more pass afterwards
        return answers[len(seen) - 1] if len(seen) <= len(answers) else None

    worker = asyncio.create_task(queue.run_worker(reconcile))
    queue.add("k")
    await asyncio.sleep(run_for)
    worker.cancel()
    queue.close()
    return seen


def test_events_during_a_pass_bring_exactly_one_more() -> None:
    assert len(asyncio.run(_passes([None, None], events_during=5))) == 2


def test_a_later_pass_replaces_an_earlier_passes_timer() -> None:
    # The first pass asks for a recheck in 0.1 s; the event-driven second pass says "on
    # events only": the first pass's timer must not bring a third.
    seen = asyncio.run(_passes([0.1, None], events_during=1))
    assert len(seen) == 2


def test_a_timer_brings_the_key_back() -> None:
    assert len(asyncio.run(_passes([0.05, None]))) == 2
