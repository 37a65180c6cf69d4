"""The host's HTTP side: /metrics (the host's own, plugin-front's, and the plugin's from
CollectMetrics), /healthz, /readyz, and /restarts (the plugin restarts it did itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from plugin_operator.host.cgroup import CGROUP_ROOT, CgroupMemoryCollector
from plugin_operator.host.front import FrontError
from plugin_operator.protocol.errors import PluginError


class HostMetrics:
    """The host's own metrics, in a registry of their own (never the plugin's names)."""

    def __init__(self, cgroup_root: Path = CGROUP_ROOT) -> None:
        self.registry = CollectorRegistry()
        self.plugin_up = Gauge("plugin_operator_host_plugin_up",
                               "1 while the plugin process runs", registry=self.registry)
        self.stdio_bytes = Counter("plugin_operator_host_plugin_output_bytes",
                                   "Bytes the plugin wrote, by stream", ["stream"],
                                   registry=self.registry)
        # Calls, refusals, streams, peers, forwarded bytes and connections are plugin-front's
        # (plugin_operator_front_*, plugin_operator_host_forwarded_bytes_total,
        # plugin_operator_host_open_connections), added to /metrics as it reports them.
        self.front_up = Gauge("plugin_operator_host_front_up",
                              "1 while plugin-front (the gRPC ports) runs",
                              registry=self.registry)
        self.front_metrics_ok = Gauge("plugin_operator_host_front_metrics_up",
                                      "1 if plugin-front's metrics were read for this scrape",
                                      registry=self.registry)
        self.plugin_restarts = Counter("plugin_operator_host_plugin_restarts",
                                       "Times the host restarted the plugin after it exited",
                                       registry=self.registry)
        self.plugin_metrics_ok = Gauge("plugin_operator_host_plugin_metrics_up",
                                       "1 if the last CollectMetrics call succeeded",
                                       registry=self.registry)
        # The gateway labels its series with plugin.json's id; this names it per pod, so a
        # dashboard can go from a Plugin's pods to its gateway traffic.
        self.plugin_info = Gauge("plugin_operator_host_plugin_info",
                                 "1, labelled with the id and version of the plugin served",
                                 ["plugin_id", "version"], registry=self.registry)
        self.registry.register(CgroupMemoryCollector(cgroup_root))


def _with_newline(text: bytes) -> bytes:
    return text if not text or text.endswith(b"\n") else text + b"\n"


def build_app(metrics: HostMetrics, *, alive: Callable[[], bool],
              ready: Callable[[], Awaitable[bool]],
              plugin_metrics: Callable[[], Awaitable[bytes]],
              front_metrics: Callable[[], Awaitable[bytes]],
              restarts: Callable[[], dict[str, Any]] = dict) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        if alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="plugin process is not running\n")

    async def readyz(request: web.Request) -> web.Response:
        try:
            ok = await ready()
        except PluginError as exc:
            return web.Response(status=503, text=f"plugin not ready: {exc}\n")
        if ok:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="plugin health service is not SERVING\n")

    async def metrics_handler(request: web.Request) -> web.Response:
        try:
            plugin_text = await plugin_metrics()
            metrics.plugin_metrics_ok.set(1)
        except PluginError:
            plugin_text = b""
            metrics.plugin_metrics_ok.set(0)
        try:
            front_text = await front_metrics()
            metrics.front_metrics_ok.set(1)
        except FrontError:
            front_text = b""
            metrics.front_metrics_ok.set(0)
        body = generate_latest(metrics.registry) + _with_newline(front_text) + \
            _with_newline(plugin_text)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def restarts_handler(request: web.Request) -> web.Response:
        return web.json_response(restarts())

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/restarts", restarts_handler)
    return app
