"""What the host tells the operator about the plugin restarts it did itself.

The kubelet counts container restarts, but not a plugin the host restarted inside the
container; without a report, ``status.restarts``, ``lastFailure`` and the events would miss
them. The host keeps the count and the last exit (``GET /restarts`` on its HTTP port), and
posts the same report to the operator after each restart. The operator believes a report only
from the address of the pod it names, so nothing else can write a pod's restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from plugin_operator.host.termination import MAX_MESSAGE_BYTES

log = logging.getLogger("plugin_operator.host")
REPORT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Exit:
    """One exit of the plugin process."""

    exit_code: int
    message: str  # the headline and the last lines it printed, bounded like Kubernetes'
    time: float  # seconds since the epoch

    def as_json(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code,
                "reason": "Error" if self.exit_code >= 0 else "Signaled",
                "message": self.message.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore"),
                "time": datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass
class RestartLog:
    """The restarts of this container's life. ``boot`` tells one life from the next: the
    count starts again at zero when the kubelet restarts the container."""

    boot: str = field(default_factory=lambda: uuid.uuid4().hex)
    restarts: int = 0
    last: Exit | None = None

    def record(self, ended: Exit) -> None:
        self.restarts += 1
        self.last = ended

    def report(self) -> dict[str, Any]:
        return {"boot": self.boot, "restarts": self.restarts,
                "last": None if self.last is None else self.last.as_json()}


class Reporter:
    """Posts reports to ``url``, one at a time, the newest winning; never blocks the host."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._pending: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def send(self, report: dict[str, Any]) -> None:
        if not self.url:
            return
        self._pending = report
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        assert self.url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT_SECONDS))
        while self._pending is not None:
            report, self._pending = self._pending, None
            try:
                async with self._session.post(self.url, json=report) as response:
                    if response.status >= 300:
                        log.warning("the operator refused the restart report",
                                    extra={"status": response.status,
                                           "answer": (await response.text())[:200]})
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("could not report the restart to the operator",
                            extra={"error": str(exc)})

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, REPORT_TIMEOUT_SECONDS)
        if self._session is not None:
            await self._session.close()
