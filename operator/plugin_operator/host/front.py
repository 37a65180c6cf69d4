"""plugin-front: the program that serves the plugin's gRPC on the pod's ports.

go-plugin puts the plugin's gRPC server on a unix socket (or loopback TCP) that nothing
outside the pod can reach, and that server also carries go-plugin's private services:
``/plugin.GRPCController/Shutdown`` stops the plugin, ``/plugin.GRPCStdio/StreamStdio``
takes its output, ``/plugin.GRPCBroker/StartStream``. The host starts ``plugin-front``
(tools/plugin-front, Go) once the plugin printed its handshake line; it serves only
``pluginv2.*`` and ``grpc.health.v1.Health`` and refuses the rest with UNIMPLEMENTED:

- the local port (``--grpc-port``, 10000 in a pod): calls go to this pod's plugin;
- the attach port (``--attach-port``, 11000 in a pod, optional): each call goes to the next
  ready replica of the Plugin, round robin per call, so one Grafana replica's single
  HTTP/2 connection reaches them all. Replicas come from looking up ``--peers`` (a
  headless Service of the ready backend pods) every second; this pod's own address
  (``--pod-ip``) is replaced by its local plugin.

Messages pass through undecoded: the local port filters HTTP/2 frames (header blocks are
checked and encoded again), the attach port routes each HTTP/2 stream to a replica, so a
call costs about what the byte forwarder it replaced did (a gRPC-level proxy in Python cost
~5 ms a call). On SIGTERM the front answers health checks NOT_SERVING for
``--drain-delay`` seconds while still serving, so the kubelet takes the pod out of its
Services, then sends GOAWAY and lets calls in progress finish. See tools/plugin-front.
"""

# `timeout` parameters are bounded waits passed down, not ad-hoc limits.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from plugin_operator.host.logs import PluginLogRecord, parse_plugin_line

FRONT_ENV = "PLUGIN_OPERATOR_FRONT"
DEFAULT_FRONT = Path("/opt/plugin-operator/bin/plugin-front")
KEEP_LAST_LINES = 40
# After the drain delay, calls in progress get this long to finish before they are cut.
STOP_TIMEOUT = 5.0

LogSink = Callable[[PluginLogRecord], None]


class FrontError(RuntimeError):
    """plugin-front is missing, did not start, or failed."""


def find_front(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """``--front``, else $PLUGIN_OPERATOR_FRONT, else where our image has it."""
    path = explicit or (Path(env[FRONT_ENV]) if env.get(FRONT_ENV) else DEFAULT_FRONT)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FrontError(
            f"plugin-front not found at {path} (not an executable file): the host serves the "
            f"plugin through it. Our image has it at {DEFAULT_FRONT}; elsewhere build it with "
            f"hack/build-front.sh and give its path with --front or ${FRONT_ENV}")
    return path


def host_port(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


@dataclass(frozen=True)
class FrontConfig:
    executable: Path
    plugin_network: str  # from the handshake: unix or tcp
    plugin_address: str
    listen: str  # host:port of the local port
    attach_listen: str | None = None  # host:port of the attach port
    peers: str | None = None  # comma-separated host:port entries
    self_ip: str | None = None
    drain_delay: float = 2.0
    stop_timeout: float = STOP_TIMEOUT

    def args(self) -> list[str]:
        args = [str(self.executable), "--plugin", f"{self.plugin_network}:{self.plugin_address}",
                "--listen", self.listen, "--metrics-listen", "127.0.0.1:0",
                "--drain-delay", f"{self.drain_delay:g}s",
                "--stop-timeout", f"{self.stop_timeout:g}s", "--stop-on-stdin-close"]
        if self.attach_listen:
            args += ["--attach-listen", self.attach_listen]
            if self.peers:
                args += ["--peers", self.peers]
            if self.self_ip:
                args += ["--self-ip", self.self_ip]
        return args


@dataclass(frozen=True)
class FrontAddresses:
    local_port: int
    attach_port: int | None
    metrics: str  # host:port of its /metrics


class FrontProcess:
    """One running plugin-front."""

    def __init__(self, config: FrontConfig, *, on_log: LogSink | None = None) -> None:
        self.config = config
        self.last_lines: collections.deque[str] = collections.deque(maxlen=KEEP_LAST_LINES)
        self._on_log = on_log or (lambda record: None)
        self._process: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []
        self._first_line: asyncio.Future[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.addresses: FrontAddresses | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self, timeout: float = 15.0) -> FrontAddresses:
        """Start it and wait (bounded) for the line with its bound addresses."""
        # stdin is a pipe we never write: when the host dies, it closes and the front stops
        # (--stop-on-stdin-close) instead of holding the ports.
        self._process = await asyncio.create_subprocess_exec(
            *self.config.args(), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # the host alone decides when it stops
        self._first_line = asyncio.get_running_loop().create_future()
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._drains = [asyncio.create_task(self._drain(self._process.stdout, "stdout")),
                        asyncio.create_task(self._drain(self._process.stderr, "stderr"))]
        exited: asyncio.Future[object] = asyncio.ensure_future(self._process.wait())
        first_line: asyncio.Future[object] = self._first_line  # type: ignore[assignment]
        try:
            done, _ = await asyncio.wait({first_line, exited}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if self._first_line in done and self._first_line.exception() is None:
            try:
                bound = json.loads(self._first_line.result())
                attach = bound.get("attach")
                self.addresses = FrontAddresses(_port_of(bound["local"]),
                                                _port_of(attach) if attach else None,
                                                str(bound["metrics"]))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self.kill()
                raise FrontError(f"plugin-front printed {self._first_line.result()[:200]!r} "
                                 f"instead of its addresses ({exc})") from exc
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            return self.addresses
        self.kill()
        code = await self._process.wait()
        await self._finish_drains(1.0)
        tail = "; ".join(list(self.last_lines)[-5:])
        if self._process.returncode is not None and code != -signal.SIGKILL:
            raise FrontError(f"plugin-front exited with code {code} before listening"
                             f"{': ' + tail if tail else ''}")
        raise FrontError(f"plugin-front did not report its ports within {timeout:g} s"
                         f"{': ' + tail if tail else ''}")

    def _line(self, raw: bytes, stream: str) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if stream == "stdout" and self._first_line is not None and not self._first_line.done():
            self._first_line.set_result(text)
            return
        if not text:
            return
        self.last_lines.append(text)
        self._on_log(parse_plugin_line(text, stream))

    async def _drain(self, reader: asyncio.StreamReader, stream: str) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line beyond the reader's limit: log it in pieces
                line = await reader.read(64 * 1024)
            if not line:
                break
            self._line(line, stream)
        if stream == "stdout" and self._first_line is not None and not self._first_line.done():
            self._first_line.set_exception(EOFError())

    async def _finish_drains(self, timeout: float) -> None:
        if not self._drains:
            return
        _, pending = await asyncio.wait(self._drains, timeout=timeout)
        for task in pending:
            task.cancel()

    async def metrics_text(self) -> bytes:
        """Its Prometheus text; FrontError when it cannot be read."""
        if self._session is None or self.addresses is None:
            raise FrontError("plugin-front is not running")
        try:
            async with self._session.get(f"http://{self.addresses.metrics}/metrics") as reply:
                reply.raise_for_status()
                return await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FrontError(f"cannot read plugin-front's metrics: {exc}") from exc

    async def wait(self) -> int:
        assert self._process is not None, "not started"
        code = await self._process.wait()
        await self._finish_drains(2.0)
        return code

    async def stop(self) -> int:
        """SIGTERM: it drains (health NOT_SERVING while still serving), sends GOAWAY, lets
        calls in progress finish, and exits. SIGKILL if it overstays all of that."""
        assert self._process is not None, "not started"
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
        bound = self.config.drain_delay + self.config.stop_timeout + 3.0
        try:
            code = await asyncio.wait_for(asyncio.shield(self.wait()), bound)
        except TimeoutError:
            self.kill()
            code = await self.wait()
        await self.close()
        return code

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def log_front_record(logger: logging.Logger, record: PluginLogRecord) -> None:
    logger.log(record.level, record.message,
               extra={f"front.{key}": value for key, value in record.fields.items()})
