"""Bounded waits for tests: poll until something holds, or fail saying what and why.

A test never sleeps and hopes: it names what it waits for, polls with a deadline, and on
timeout reports the last value it saw and whatever diagnostics the caller can give.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(what: str, probe: Callable[[], T], *, timeout_s: float = 60,
               interval_s: float = 0.5, diagnostics: Callable[[], str] = lambda: "",
               tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """``probe()``'s first truthy value within ``timeout_s``; AssertionError otherwise.
    Exceptions of the ``tolerate`` types count as "not yet" (and are shown on timeout)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            value = probe()
        except tolerate as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last "
                                 f"value: {last!r}\n{diagnostics()}".rstrip())
        time.sleep(interval_s)


async def eventually_async(what: str, probe: Callable[[], Awaitable[T] | T], *,
                           timeout_s: float = 30, interval_s: float = 0.05) -> T:
    """The asyncio twin of ``eventually``; ``probe`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        value = probe()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last "
                                 f"value: {last!r}")
        await asyncio.sleep(interval_s)
