"""Start ``plugin-operator host`` as a subprocess and learn its ports: for tests and tools.

    async with running_host(plugin_dir, tmp_path) as host:
        async with PluginClient(host.grpc_target) as client: ...
"""

# `timeout` parameters are gRPC deadlines and bounded waits passed down, not ad-hoc limits.
# ruff: noqa: ASYNC109, ASYNC240

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class HostStartError(RuntimeError):
    """The host exited or did not become ready; the message holds its output."""


@dataclass
class RunningHost:
    process: asyncio.subprocess.Process
    grpc_port: int
    http_port: int
    plugin_pid: int
    output: Path
    termination_log: Path
    front_pid: int | None = None
    attach_port: int | None = None
    bind: str = "127.0.0.1"
    plugin_target: str | None = None  # the plugin's own go-plugin address, as a gRPC target

    @property
    def grpc_target(self) -> str:
        return f"{self.bind}:{self.grpc_port}"

    @property
    def attach_target(self) -> str:
        assert self.attach_port is not None, "started without --attach-port"
        return f"{self.bind}:{self.attach_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the host (it stops the plugin like Grafana) and return its exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)


def host_command(plugin_dir: Path, work_dir: Path, args: Sequence[str] = ()) -> list[str]:
    # No drain delay: nothing routes to these hosts by readiness (``args`` may set one).
    return [sys.executable, "-m", "plugin_operator.cli", "host", str(plugin_dir),
            "--grpc-bind", "127.0.0.1", "--grpc-port", "0", "--http-bind", "127.0.0.1",
            "--http-port", "0", "--ports-file", str(work_dir / "ports.json"),
            "--termination-log", str(work_dir / "termination-log"), "--drain-delay", "0",
            *args]


def _bind_of(args: Sequence[str]) -> str:
    """The last --grpc-bind in ``args`` (a later option wins), else loopback."""
    binds = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--grpc-bind"]
    bind = binds[-1] if binds else "127.0.0.1"
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


async def start_host(plugin_dir: Path, work_dir: Path, args: Sequence[str] = (), *,
                     env: Mapping[str, str] | None = None, timeout: float = 60.0) -> RunningHost:
    """Start the host on free loopback ports and wait until it reports them."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ports_file = work_dir / "ports.json"
    ports_file.unlink(missing_ok=True)
    output = work_dir / "host.log"
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *host_command(plugin_dir, work_dir, args), stdout=sink, stderr=sink,
            env={**os.environ, **(env or {})})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ports_file.exists():
        if process.returncode is not None or loop.time() > deadline:
            if process.returncode is None:
                process.kill()
            await process.wait()
            raise HostStartError(f"host for {plugin_dir} did not become ready "
                                 f"(exit {process.returncode}):\n{output.read_text()[-4000:]}")
        await asyncio.sleep(0.05)
    ports = json.loads(ports_file.read_text())
    return RunningHost(process, ports["grpc"], ports["http"], ports["pid"], output,
                       work_dir / "termination-log", ports.get("front_pid"),
                       ports.get("attach"), _bind_of(args), ports.get("plugin"))


@contextlib.asynccontextmanager
async def running_host(plugin_dir: Path, work_dir: Path, args: Sequence[str] = (), *,
                       env: Mapping[str, str] | None = None) -> AsyncIterator[RunningHost]:
    host = await start_host(plugin_dir, work_dir, args, env=env)
    try:
        yield host
    finally:
        if host.process.returncode is None:
            try:
                await host.stop()
            except TimeoutError:
                host.process.kill()
                await host.process.wait()
