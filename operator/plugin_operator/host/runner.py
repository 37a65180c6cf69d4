"""Run one plugin backend for its whole life, the way Grafana would, inside a pod."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from plugin_operator.host.front import (
    STOP_TIMEOUT,
    FrontConfig,
    FrontError,
    FrontProcess,
    find_front,
    host_port,
    log_front_record,
)
from plugin_operator.host.handshake import Handshake, HandshakeError, plugin_environment
from plugin_operator.host.http import HostMetrics, build_app
from plugin_operator.host.logs import PluginLogRecord
from plugin_operator.host.process import PluginProcess
from plugin_operator.host.reports import Exit, Reporter, RestartLog
from plugin_operator.host.supervision import RestartPolicy, Supervisor
from plugin_operator.host.termination import (
    describe_exit,
    host_exit_code,
    termination_message,
    write_termination_message,
)
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.package.plugin_json import (
    PluginJsonError,
    load_plugin_json,
    resolve_executable,
)
from plugin_operator.protocol.client import PluginClient, grpc_target
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import CollectMetricsRequest, PluginContext

log = logging.getLogger("plugin_operator.host")
plugin_log = logging.getLogger("plugin")
front_log = logging.getLogger("plugin_operator.host.front")

EXIT_CONFIG_ERROR = 2
EXIT_HANDSHAKE_FAILED = 3
EXIT_FRONT_FAILED = 4


@dataclass
class HostConfig:
    plugin_dir: Path
    grpc_bind: str = "0.0.0.0"
    grpc_port: int = 10000
    http_bind: str = "0.0.0.0"
    http_port: int = 9100
    handshake_timeout: float = 60.0
    shutdown_grace: float = 2.0
    termination_log: Path = Path("/dev/termination-log")
    grafana_version: str = DEFAULT_GRAFANA_VERSION
    settings: Mapping[str, str] = field(default_factory=dict)
    socket_dir: str | None = None
    ports_file: Path | None = None
    # plugin-front: None finds it through $PLUGIN_OPERATOR_FRONT or the image's path.
    front: Path | None = None
    # The attach port (balanced over the Plugin's replicas); None: no attach port.
    attach_bind: str | None = None  # default: grpc_bind
    attach_port: int | None = None
    peers: str | None = None  # host:port (comma-separated) listing the ready replicas
    pod_ip: str | None = None  # this pod's address among the peers
    drain_delay: float = 2.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Where to post restart reports (the operator's, for this pod); None: nowhere.
    report_url: str | None = None


_NO_EXIT = Exit(0, "", 0.0)


@dataclass(frozen=True)
class _Live:
    """The plugin process the host serves now, its connection and its front."""

    process: PluginProcess
    client: PluginClient
    front: FrontProcess


@dataclass(frozen=True)
class _Ended:
    """How one life of the plugin ended: ``exit_code`` for the host to exit with, or the
    plugin's ``failure`` for the supervisor to weigh."""

    runner: web.AppRunner | None
    exit_code: int | None = None
    failure: Exit = _NO_EXIT


def _log_plugin(record: PluginLogRecord) -> None:
    plugin_log.log(record.level, record.message,
                   extra={f"plugin.{key}": value for key, value in record.fields.items()})


def _child_host_env() -> dict[str, str]:
    """Our environment, with this interpreter's directory first on PATH so Python plugin
    launchers (``#!/usr/bin/env python3``) find the Python that has plugin_operator."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    return env


def _write_ports(path: Path, ports: Mapping[str, int | str]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(dict(ports)))
    temporary.replace(path)  # readers never see a half-written file


class Host:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.metrics = HostMetrics()
        self.stop_requested = asyncio.Event()
        self.supervisor = Supervisor(time.monotonic, config.restart_policy)
        self.restarts = RestartLog()
        self.reporter = Reporter(config.report_url)
        self.live: _Live  # set once the plugin first serves
        # The ports the first front got (0 asks for any free one): later fronts keep them.
        self._grpc_port, self._attach_port = config.grpc_port, config.attach_port

    def _fail(self, message: str, code: int) -> int:
        log.error(message)
        write_termination_message(self.config.termination_log, message)
        return code

    async def run(self) -> int:
        cfg = self.config
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        try:
            plugin = load_plugin_json(cfg.plugin_dir)
            self.metrics.plugin_info.labels(plugin.id, plugin.version).set(1)
            executable = resolve_executable(cfg.plugin_dir, plugin)
            env = plugin_environment(_child_host_env(), grafana_version=cfg.grafana_version,
                                     settings=cfg.settings, socket_dir=cfg.socket_dir,
                                     extra={"GF_PLUGIN_VERSION": plugin.version}
                                     if plugin.version else None)
            front_binary = find_front(cfg.front, os.environ)
        except (PluginJsonError, ValueError, FrontError) as exc:
            return self._fail(f"cannot run plugin in {cfg.plugin_dir}: {exc}", EXIT_CONFIG_ERROR)
        runner: web.AppRunner | None = None
        try:
            while True:
                ended = await self._run_once(plugin.id, executable, env, front_binary, runner)
                runner = ended.runner
                if ended.exit_code is not None:
                    return ended.exit_code
                decision = self.supervisor.exited()
                self.restarts.record(ended.failure)
                self.metrics.plugin_restarts.inc()
                self.reporter.send(self.restarts.report())
                if not decision.restart:
                    log.error("the plugin keeps exiting; leaving the restarts to the kubelet",
                              extra={"plugin_id": plugin.id})
                    return self._fail(ended.failure.message,
                                      host_exit_code(ended.failure.exit_code))
                log.warning("restarting the plugin", extra={
                    "plugin_id": plugin.id, "delay": decision.delay,
                    "exit": describe_exit(ended.failure.exit_code)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), decision.delay)
                if self.stop_requested.is_set():
                    return 0
        finally:
            if runner is not None:
                await runner.cleanup()
            await self.reporter.close()

    async def _run_once(self, plugin_id: str, executable: Path, env: Mapping[str, str],
                        front_binary: Path, runner: web.AppRunner | None) -> _Ended:
        """One life of the plugin process: started, served, then stopped or exited."""
        cfg = self.config
        process = PluginProcess(executable, env, cwd=cfg.plugin_dir, on_log=_log_plugin,
                                on_bytes=lambda s, n: self.metrics.stdio_bytes.labels(s).inc(n))
        await process.start()
        self.metrics.plugin_up.set(1)
        log.info("plugin started", extra={"plugin_id": plugin_id, "pid": process.pid,
                                          "executable": str(executable)})
        handshake_task = asyncio.ensure_future(process.handshake(cfg.handshake_timeout))
        stop_task = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({handshake_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if not handshake_task.done():
            handshake_task.cancel()
            process.kill()
            await process.wait()
            return _Ended(runner, exit_code=0)
        stop_task.cancel()
        try:
            handshake = handshake_task.result()
        except HandshakeError as exc:
            process.kill()
            await process.wait()
            self.metrics.plugin_up.set(0)
            return _Ended(runner, exit_code=self._fail(termination_message(
                f"plugin {plugin_id} failed its handshake: {exc}", process.last_lines),
                EXIT_HANDSHAKE_FAILED))
        client = PluginClient(grpc_target(handshake.network, handshake.address), timeout=10.0)
        stdio = asyncio.create_task(self._mirror_stdio(client))
        exited = asyncio.ensure_future(process.wait())
        front = FrontProcess(self._front_config(front_binary, handshake),
                             on_log=lambda record: log_front_record(front_log, record))
        try:
            addresses = await front.start()
        except FrontError as exc:
            stdio.cancel()
            await self._stop_plugin(client, process, exited)
            await client.close()
            return _Ended(runner, exit_code=self._fail(termination_message(
                f"plugin {plugin_id}: its gRPC front did not start: {exc}", front.last_lines),
                EXIT_FRONT_FAILED))
        self.metrics.front_up.set(1)
        self._grpc_port, self._attach_port = addresses.local_port, addresses.attach_port
        self.live = _Live(process, client, front)
        self.supervisor.started()
        if runner is None:
            runner = await self._serve(plugin_id)
        self._announce(plugin_id, addresses.local_port, addresses.attach_port, runner)
        front_exited = asyncio.ensure_future(front.wait())
        stop_task = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({exited, front_exited, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stdio.cancel()
        stop_task.cancel()
        if exited.done():
            code = exited.result()
            self.metrics.plugin_up.set(0)
            process.kill()  # leftovers in its process group
            front.kill()  # nothing left to serve; callers see the connection end
            await front.wait()
            self.metrics.front_up.set(0)
            await front.close()
            await client.close()
            headline = f"plugin {plugin_id} (pid {process.pid}) {describe_exit(code)}"
            return _Ended(runner, failure=Exit(
                code, termination_message(headline, process.last_lines),
                time.time()))
        if front_exited.done():
            code = front_exited.result()
            self.metrics.front_up.set(0)
            await self._stop_plugin(client, process, exited)
            await front.close()
            await client.close()
            headline = (f"plugin-front (pid {front.pid}), which serves plugin {plugin_id}'s "
                        f"gRPC ports, {describe_exit(code)}; the plugin was stopped")
            return _Ended(runner, exit_code=self._fail(
                termination_message(headline, front.last_lines), host_exit_code(code)))
        # Stopping: the front first (its health says NOT_SERVING while it still serves for
        # the drain delay, then GOAWAY and calls in progress finish), the plugin after.
        log.info("stopping: draining the gRPC ports, then the plugin",
                 extra={"plugin_id": plugin_id, "drain_delay": cfg.drain_delay})
        front_code = await front.stop()
        self.metrics.front_up.set(0)
        if front_code != 0:
            log.warning("plugin-front did not stop cleanly",
                        extra={"exit": describe_exit(front_code)})
        await self._stop_plugin(client, process, exited)
        await front.close()
        await client.close()
        log.info("plugin stopped", extra={"plugin_id": plugin_id})
        return _Ended(runner, exit_code=0)

    def _front_config(self, executable: Path, handshake: Handshake) -> FrontConfig:
        cfg = self.config
        attach = None
        if self._attach_port is not None:
            attach = host_port(cfg.attach_bind or cfg.grpc_bind, self._attach_port)
        return FrontConfig(executable, handshake.network, handshake.address,
                           listen=host_port(cfg.grpc_bind, self._grpc_port),
                           attach_listen=attach,
                           peers=cfg.peers, self_ip=cfg.pod_ip, drain_delay=cfg.drain_delay,
                           stop_timeout=STOP_TIMEOUT)

    async def _mirror_stdio(self, client: PluginClient) -> None:
        # go-plugin opens StreamStdio at once; a Go plugin's os.Stdout blocks without it.
        try:
            async for channel, data in client.stdio():
                stream = channel.name.lower()
                for line in data.decode("utf-8", errors="replace").splitlines():
                    _log_plugin(PluginLogRecord(logging.INFO, line, {"stream": stream}))
        except PluginError as exc:
            log.debug("no stdio mirroring", extra={"reason": str(exc)})

    async def _serve(self, plugin_id: str) -> web.AppRunner:
        """The HTTP side, once: it talks to whichever plugin process runs now."""
        cfg = self.config

        async def plugin_metrics() -> bytes:
            result = await self.live.client.collect_metrics(
                CollectMetricsRequest(PluginContext(plugin_id=plugin_id)), timeout=5.0)
            return result.prometheus

        app = build_app(self.metrics, alive=self._alive,
                        ready=lambda: self.live.client.health(timeout=2.0),
                        plugin_metrics=plugin_metrics,
                        front_metrics=lambda: self.live.front.metrics_text(),
                        restarts=self.restarts.report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, cfg.http_bind, cfg.http_port)
        await site.start()
        return runner

    def _alive(self) -> bool:
        """Between two lives of the plugin the host restarts it: still alive."""
        return self.live.process.returncode is None or not self.stop_requested.is_set()

    def _announce(self, plugin_id: str, grpc_port: int, attach_port: int | None,
                  runner: web.AppRunner) -> None:
        cfg = self.config
        http_port = runner.addresses[0][1]
        ports: dict[str, int | str] = {"grpc": grpc_port, "http": http_port,
                                       "pid": self.live.process.pid,
                                       "front_pid": self.live.front.pid,
                                       "plugin": self.live.client.target}
        if attach_port is not None:
            ports["attach"] = attach_port
        if cfg.ports_file is not None:
            _write_ports(cfg.ports_file, ports)
        log.info("host ready", extra={"plugin_id": plugin_id, "grpc_port": grpc_port,
                                      "attach_port": attach_port, "peers": cfg.peers,
                                      "http_port": http_port,
                                      "plugin_address": self.live.client.target})

    async def _stop_plugin(self, client: PluginClient, process: PluginProcess,
                           exited: asyncio.Future[int]) -> None:
        """Grafana's way: Shutdown RPC, close the connection, 2 s grace, then SIGKILL."""
        with contextlib.suppress(PluginError):
            await client.shutdown(timeout=self.config.shutdown_grace)
        await client.close()
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.config.shutdown_grace)
        except TimeoutError:
            log.warning("plugin failed to exit gracefully; killing it")
            process.kill()
            await exited
        process.kill()  # leftovers in its process group
