"""Grafana Live's stream semantics over SSE: one RunStream per channel shared by all its
subscribers, restarted with backoff when it fails while someone still listens, cancelled
when the last subscriber leaves; publishes fan out to the channel's subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import StreamRequest

from .upstream import Upstream

log = logging.getLogger("plugin_operator.gateway.streams")

QUEUE_PACKETS = 256
FAST_FAILURE_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
_END = None


def restart_delay(fast_failures: int) -> float:
    """Grafana's RunStream restart delay: 100 ms * 2^n for n fast failures, capped at 5 s."""
    return float(min(FAST_FAILURE_SECONDS * (2 ** fast_failures), MAX_BACKOFF_SECONDS))


@dataclass(frozen=True)
class StreamTarget:
    """Where and how to run a channel's stream now (a fresh PluginContext every time)."""

    plugin: str
    endpoints: Sequence[str]
    request: StreamRequest


Prepare = Callable[[], Awaitable[StreamTarget]]


@dataclass
class _Channel:
    subscribers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    runner: asyncio.Task[None] | None = None


class StreamHub:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._channels: dict[str, _Channel] = {}

    def subscriber_count(self, channel: str) -> int:
        state = self._channels.get(channel)
        return len(state.subscribers) if state else 0

    async def listen(self, channel: str, prepare: Prepare) -> AsyncIterator[bytes]:
        """Packets of ``channel`` until the stream ends or the caller stops iterating."""
        state = self._channels.setdefault(channel, _Channel())
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_PACKETS)
        state.subscribers.add(queue)
        if state.runner is None or state.runner.done():
            state.runner = asyncio.create_task(self._run(channel, state, prepare))
        try:
            while True:
                packet = await queue.get()
                if packet is _END:
                    return
                yield packet
        finally:
            state.subscribers.discard(queue)
            if not state.subscribers:
                if state.runner is not None and not state.runner.done():
                    state.runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await state.runner
                if self._channels.get(channel) is state:
                    del self._channels[channel]

    def publish(self, channel: str, packet: bytes) -> int:
        """Hand ``packet`` to every subscriber of ``channel``; returns how many got it."""
        state = self._channels.get(channel)
        if state is None:
            return 0
        for queue in list(state.subscribers):
            self._offer(state, queue, packet)
        return len(state.subscribers)

    @staticmethod
    def _offer(state: _Channel, queue: asyncio.Queue[bytes | None], packet: bytes | None
               ) -> None:
        try:
            queue.put_nowait(packet)
        except asyncio.QueueFull:
            # A subscriber this far behind is dropped rather than slowing everyone down.
            state.subscribers.discard(queue)
            with contextlib.suppress(asyncio.QueueFull):
                queue.get_nowait()
                queue.put_nowait(_END)

    async def _run(self, channel: str, state: _Channel, prepare: Prepare) -> None:
        loop = asyncio.get_running_loop()
        fast_failures = 0
        while state.subscribers:
            started = loop.time()
            try:
                target = await prepare()
                async for packet in self._run_once(target):
                    for queue in list(state.subscribers):
                        self._offer(state, queue, packet)
                break  # the plugin ended the stream without an error: it is finished
            except (PluginError, LookupError, OSError) as exc:
                log.warning("stream %s failed: %s", channel, exc)
            except Exception as exc:
                log.warning("stream %s failed: %s", channel, getattr(exc, "message", exc))
            fast_failures = fast_failures + 1 if loop.time() - started < FAST_FAILURE_SECONDS \
                else 0
            await asyncio.sleep(restart_delay(fast_failures))
        for queue in list(state.subscribers):
            self._offer(state, queue, _END)

    async def _run_once(self, target: StreamTarget) -> AsyncIterator[bytes]:
        endpoint_target = self.upstream.tracker.pick(target.endpoints)
        if endpoint_target is None:
            raise PluginError(f"no ready backend for plugin {target.plugin}",
                              method="RunStream")
        client = self.upstream.client(endpoint_target)
        with self.upstream.tracker.calling(endpoint_target):
            async for packet in client.run_stream(target.request):
                yield packet
