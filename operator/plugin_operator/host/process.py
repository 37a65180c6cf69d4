"""The plugin child process: start, handshake, never-blocking stdio draining, stop.

Output is read in chunks (not lines) so a plugin printing megabytes, or one huge line,
cannot fill a pipe and block; the newest lines are kept for the termination message.
"""

# `timeout` parameters are gRPC deadlines and bounded waits passed down, not ad-hoc limits.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from plugin_operator.host.handshake import Handshake, HandshakeError, parse_handshake_line
from plugin_operator.host.logs import PluginLogRecord, parse_plugin_line

_CHUNK = 64 * 1024
_MAX_LINE = 16 * 1024  # longer lines are logged in pieces
KEEP_LAST_LINES = 40

LogSink = Callable[[PluginLogRecord], None]


class PluginProcess:
    """One running backend executable."""

    def __init__(self, executable: Path, env: Mapping[str, str], *, cwd: Path | None = None,
                 on_log: LogSink | None = None, on_bytes: Callable[[str, int], None] | None = None
                 ) -> None:
        self.executable = executable
        self.env = dict(env)
        self.cwd = cwd
        self.last_lines: collections.deque[str] = collections.deque(maxlen=KEEP_LAST_LINES)
        self._on_log = on_log or (lambda record: None)
        self._on_bytes = on_bytes or (lambda stream, size: None)
        self._process: asyncio.subprocess.Process | None = None
        self._handshake: asyncio.Future[str] | None = None
        self._drains: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            str(self.executable), env=self.env, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # own process group: SIGKILL reaches its children too
        self._handshake = asyncio.get_running_loop().create_future()
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._drains = [asyncio.create_task(self._drain(self._process.stdout, "stdout")),
                        asyncio.create_task(self._drain(self._process.stderr, "stderr"))]

    def _line(self, raw: bytes, stream: str) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if stream == "stdout" and self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(text)
            return
        if text:
            self.last_lines.append(text)
        self._on_log(parse_plugin_line(text, stream))

    async def _drain(self, reader: asyncio.StreamReader, stream: str) -> None:
        pending = b""
        while chunk := await reader.read(_CHUNK):
            self._on_bytes(stream, len(chunk))
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(line, stream)
            while len(pending) > _MAX_LINE:
                self._line(pending[:_MAX_LINE], stream)
                pending = pending[_MAX_LINE:]
        if pending:
            self._line(pending, stream)
        if stream == "stdout" and self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(EOFError())

    async def handshake(self, timeout: float) -> Handshake:
        """Wait (bounded) for the handshake line and validate it."""
        assert self._process is not None, "not started"
        assert self._handshake is not None, "not started"
        exited: asyncio.Future[object] = asyncio.ensure_future(self._process.wait())
        handshake: asyncio.Future[object] = self._handshake  # type: ignore[assignment]
        try:
            done, _ = await asyncio.wait({handshake, exited}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if self._handshake in done and self._handshake.exception() is None:
            return parse_handshake_line(self._handshake.result())
        if self._process.returncode is not None or self._handshake in done:
            code = await self._process.wait()
            await self._finish_drains(1.0)
            tail = "; ".join(list(self.last_lines)[-5:])
            raise HandshakeError(f"plugin exited (code {code}) before printing its handshake "
                                 f"line{': ' + tail if tail else ''}")
        raise HandshakeError(f"plugin printed no handshake line within {timeout:g} s; a backend "
                             "plugin must print 1|2|unix|<socket>|grpc on stdout when it starts "
                             "(does it call serve()/backend.Manage?)")

    async def wait(self) -> int:
        assert self._process is not None, "not started"
        code = await self._process.wait()
        await self._finish_drains(2.0)
        return code

    async def _finish_drains(self, timeout: float) -> None:
        # Children that inherited the pipes may keep them open; don't wait for ever.
        _, pending = await asyncio.wait(self._drains, timeout=timeout) if self._drains \
            else (set(), set())
        for task in pending:
            task.cancel()

    def kill(self) -> None:
        """SIGKILL the plugin's whole process group."""
        if self._process is None or self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()


def log_plugin_record(logger: logging.Logger, record: PluginLogRecord) -> None:
    logger.log(record.level, record.message, extra={"plugin": record.fields})
