"""The pods step of a Plugin's pass in Pod mode: its backend pods and Services made to match
the verified package and spec, and what they say about the backend now.

The plan (which pods to create, replace or remove) is planner.py's; this step carries it
out, counts restarts and reports. The Plugin's status is written by the caller, from what
this step returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plugin_operator.controller import metrics
from plugin_operator.controller.backoff import Backoff
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.packages import VerifiedPackage
from plugin_operator.controller.planner import DeleteReason, ObservedPod, observe_pod, plan_pods
from plugin_operator.controller.podspec import (
    PluginRef,
    backend_peers_service,
    backend_pod,
    backend_service,
    spec_hash,
)
from plugin_operator.controller.status import Failure, backend_phase, latest_failure
from plugin_operator.kube.rest import ConflictError, KubeApi, NotFoundError, core_path
from plugin_operator.models import naming
from plugin_operator.models.resources import ObjectRef, PluginSpec
from plugin_operator.models.status import Phase, PluginStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodsPass:
    """What the backend pods are after a pass: the facts the Plugin's status reports."""

    pods: tuple[ObservedPod, ...]
    alive: int
    ready: int
    phase: Phase
    restarts: int  # the status' count, with this pass' failures and restarts added
    failure: Failure | None  # the latest crash or failed fetch, if any
    waiting_for_backoff: bool


class BackendPods:
    def __init__(self, kube: KubeApi, config: OperatorConfig, backoff: Backoff,
                 events: EventRecorder) -> None:
        self.kube = kube
        self.config = config
        self.backoff = backoff
        self.events = events
        # Service path -> (digest of the body we applied, resourceVersion it got). A pass
        # applies a Service only when its body changed or the Service did since (a watch
        # event with another resourceVersion: service_changed): at thousands of Plugins,
        # re-applying two unchanged Services on every pass was a third of the writes.
        self._applied: dict[str, tuple[str, str]] = {}

    async def run(self, key: ObjectRef, ref: PluginRef, obj: dict[str, Any],
                  spec: PluginSpec, package: VerifiedPackage, now: datetime) -> PodsPass:
        wanted_hash = spec_hash(spec, package.artifact, self.config)
        pods = [observe_pod(p) for p in await self.list(key)]
        plan = plan_pods(spec.replicas, wanted_hash, pods, now,
                         self.backoff.remaining(str(key)))
        restarts = PluginStatus.parse(obj.get("status")).restarts or 0
        for deletion in plan.delete:
            if deletion.reason is DeleteReason.FAILED:
                restarts += 1
                delay = self.backoff.record_failure(str(key))
                metrics.BACKEND_RESTARTS.labels(key.namespace, key.name).inc()
                why = deletion.pod.reason or deletion.pod.phase
                self.events.emit(obj, "Warning", "BackendReplaced",
                                 f"pod {deletion.pod.name} failed ({why}); a new pod follows "
                                 f"in {delay:.0f}s")
            await self.kube.delete(core_path(key.namespace, "pods", deletion.pod.name),
                                   grace_period_seconds=0 if deletion.force else None,
                                   uid=deletion.pod.uid)
        for pod in pods:
            if pod.alive and pod.restarts > pod.restarts_counted:
                restarts += pod.restarts - pod.restarts_counted
                metrics.BACKEND_RESTARTS.labels(key.namespace, key.name).inc(
                    pod.restarts - pod.restarts_counted)
                await self._mark_restarts_counted(key, pod)
        created = 0
        for ordinal in plan.create:
            try:
                await self.kube.create(core_path(key.namespace, "pods"),
                                       backend_pod(ref, spec, package.artifact, self.config,
                                                   ordinal, spare=ordinal in plan.spare))
                created += 1
            except ConflictError:
                log.debug("pod %s/%d exists already", key, ordinal)
        if plan.create and plan.rolling:
            self.events.emit(obj, "Normal", "RollingUpdate",
                             f"starting a backend of the new spec ({wanted_hash[:10]})")
        await self._apply_service(core_path(key.namespace, "services",
                                            naming.service_name(key.name)),
                                  backend_service(ref, spec))
        await self._apply_service(core_path(key.namespace, "services",
                                            naming.peers_service_name(key.name)),
                                  backend_peers_service(ref, spec))
        alive = [p for p in pods if p.alive]
        ready = sum(p.ready for p in alive)
        phase = backend_phase(spec.replicas, ready, alive + [p for p in pods if p.terminal])
        self.backoff.observe_health(str(key), ready >= spec.replicas)
        # The pods this pass created count already: the pass their creation brings then
        # finds the status it would write written.
        return PodsPass(tuple(pods), len(alive) + created, ready, phase, restarts,
                        latest_failure(pods), plan.waiting_for_backoff)

    async def _apply_service(self, path: str, body: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if self._applied.get(path, ("", ""))[0] == digest:
            return
        applied = await self.kube.apply(path, body)
        self._applied[path] = (digest, str(applied.get("metadata", {}).get("resourceVersion")))

    def service_changed(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """A watch event of one of our Services; True when it was not our own apply (it was
        changed by someone else, or deleted: ``resource_version`` None), so that the next
        pass applies it again."""
        path = core_path(namespace, "services", name)
        known = self._applied.get(path)
        if known is not None and resource_version is not None and known[1] == resource_version:
            return False
        self._applied.pop(path, None)
        return True

    def forget_services(self, key: ObjectRef) -> None:
        for name in (naming.service_name(key.name), naming.peers_service_name(key.name)):
            self._applied.pop(core_path(key.namespace, "services", name), None)

    async def list(self, key: ObjectRef) -> list[dict[str, Any]]:
        return await self.kube.list(f"/api/v1/namespaces/{key.namespace}/pods",
                                    label_selector=f"{naming.LABEL_PLUGIN}={key.name}")

    async def delete_all(self, key: ObjectRef) -> None:
        for pod in await self.list(key):
            await self.kube.delete(core_path(key.namespace, "pods", pod["metadata"]["name"]),
                                   uid=pod["metadata"]["uid"])

    async def _mark_restarts_counted(self, key: ObjectRef, pod: ObservedPod) -> None:
        """Remember on the pod which of its container restarts the status has counted."""
        try:
            await self.kube.merge_patch(core_path(key.namespace, "pods", pod.name), {
                "metadata": {"annotations": {naming.ANNOTATION_RESTARTS: str(pod.restarts)}}})
        except NotFoundError:
            return
