"""Everything the operator runs besides kopf itself: services, work queues, HTTP servers.

Built once at start-up from the configuration; kopf's handlers only put keys into the
queues, and the workers here turn keys into reconcile passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plugin_operator.controller.artifacts import (
    ArtifactCollector,
    ArtifactStore,
    UploadDesk,
    artifact_routes,
    digests_in_use,
)
from plugin_operator.controller.attachments import AttachmentService
from plugin_operator.controller.backoff import Backoff
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.datasources import DataSourceService
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.images import ImageUnpacker
from plugin_operator.controller.packages import PackagePipeline
from plugin_operator.controller.plugins import PluginService
from plugin_operator.controller.restart_reports import RestartReports
from plugin_operator.controller.sidecars import SidecarService, TargetKey
from plugin_operator.controller.watch_cache import WatchCaches
from plugin_operator.controller.workqueue import WorkQueue
from plugin_operator.kube.client import api_client
from plugin_operator.kube.rest import KubeApi, group_path
from plugin_operator.models.resources import API_VERSION, PLUGIN_PLURAL, ObjectRef

log = logging.getLogger(__name__)
K = TypeVar("K")
# Reconciles mostly wait on the apiserver; enough of them overlap to keep it busy.
WORKERS_PER_KIND = 16


class Runtime:
    def __init__(self, config: OperatorConfig, kubeconfig: str | None = None) -> None:
        self.config = config
        self.kubeconfig = kubeconfig
        self.plugins: WorkQueue[ObjectRef] = WorkQueue()
        self.datasources: WorkQueue[ObjectRef] = WorkQueue()
        self.targets: WorkQueue[TargetKey] = WorkQueue()
        self.attachments: WorkQueue[ObjectRef] = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._api: KubeApi | None = None
        # What the watches brought (handlers.py): passes read their object, its archive
        # ConfigMap, or its Plugin and Secrets here rather than with GETs.
        self.caches = WatchCaches()

    async def start(self) -> None:
        kube = self._api = await api_client(self.kubeconfig)
        store = ArtifactStore(self.config.artifacts_directory, self.config.artifacts_max_bytes)
        pipeline = PackagePipeline(store, self.config)
        collector = ArtifactCollector(store, lambda: self._digests_in_use(kube),
                                      on_evicted=pipeline.forget)
        self._tasks.append(asyncio.create_task(collector.run()))
        events = EventRecorder(kube)
        self.events = events
        self.sidecar_service = SidecarService(kube, self.config, events,
                                              on_plugin_changed=self.plugins.add)
        desk: UploadDesk[ObjectRef] = UploadDesk(on_arrival=self.plugins.add)
        self.plugin_service = PluginService(
            kube, self.config, pipeline, Backoff(self.config.backoff, time.monotonic), events,
            sidecars=self.sidecar_service, on_target_changed=self.targets.add,
            images=ImageUnpacker(kube, self.config, store, desk), caches=self.caches)
        self.datasource_service = DataSourceService(kube, self.config, events,
                                                    caches=self.caches)
        self._spawn(self.plugins, self.plugin_service.reconcile)
        self._spawn(self.datasources, self.datasource_service.reconcile)
        self._spawn(self.targets, self.sidecar_service.reconcile_target)
        self.attachment_service = AttachmentService(kube, self.config, events)
        self._spawn(self.attachments, self.attachment_service.reconcile)
        max_upload = self.config.package_limits.max_total_bytes
        await self._serve(self.config.artifacts_port,
                          artifact_routes(store, desk, max_upload, RestartReports(kube)),
                          client_max_size=max_upload)
        await self._serve(self.config.metrics_port, _metrics_routes())
        log.info("operator runtime started: artifacts on :%d, metrics on :%d",
                 self.config.artifacts_port, self.config.metrics_port)

    async def _digests_in_use(self, kube: KubeApi) -> set[str]:
        namespaces: tuple[str | None, ...] = self.config.namespaces or (None,)
        plugins = []
        for namespace in namespaces:
            plugins += await kube.list(group_path(API_VERSION, namespace, PLUGIN_PLURAL))
        return digests_in_use(plugins)

    def _spawn(self, queue: WorkQueue[K],
               reconcile: Callable[[K], Awaitable[float | None]]) -> None:
        for _ in range(WORKERS_PER_KIND):
            self._tasks.append(asyncio.create_task(queue.run_worker(reconcile)))

    async def _serve(self, port: int, routes: web.RouteTableDef,
                     client_max_size: int = 1024**2) -> None:
        app = web.Application(client_max_size=client_max_size)
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # Plugin pods and Prometheus reach these from the pod network.
        await web.TCPSite(runner, "0.0.0.0", port).start()
        self._runners.append(runner)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in (self.plugins, self.datasources, self.targets, self.attachments):
            queue.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._api is not None:
            await self.events.flush()
            await self._api.close()


def _metrics_routes() -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/metrics")
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type":
                                                             CONTENT_TYPE_LATEST})

    return routes
