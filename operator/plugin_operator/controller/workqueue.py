"""A de-duplicating work queue of object keys, like client-go's.

Watch events only say "look at this object again"; many events for one object collapse into
one pass, an object is never reconciled by two workers at once, and an object that changes
while it is being reconciled is reconciled once more afterwards. When the next timed pass
is due is for the latest pass to say: it replaces whatever an earlier pass asked for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def schedule(self, key: K, delay: float | None) -> None:
        """Reconcile ``key`` after ``delay`` seconds (None: on events only), instead of when
        an earlier pass asked for: that pass saw an older world."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if delay is None:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_at(loop.time() + delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._dirty)

    async def _next(self) -> K:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def _done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    async def run_worker(self, reconcile: Callable[[K], Awaitable[float | None]]) -> None:
        """Process keys forever. ``reconcile`` returns seconds until the next pass (None: only
        on the next event); an exception is logged and retried after a second."""
        while True:
            key = await self._next()
            try:
                again = await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling %s failed; retrying", key)
                again = 1.0
            finally:
                self._done(key)
            self.schedule(key, again)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
