"""Sidecar mode: our part of a workload's pod template, applied server-side as one set.

For each target workload, the wanted sidecars are all Sidecar-mode Plugins that name it
(or default to the gateway), are verified, and are not being deleted. Server-side apply
under our own field manager makes exactly that set ours: a sidecar that is no longer wanted
disappears because we stop applying it, with no diffing of containers by hand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from plugin_operator.controller import metrics
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.podspec import Artifact, Sidecar, assign_slots, sidecar_apply_patch
from plugin_operator.kube.rest import ApiError, ConflictError, KubeApi, NotFoundError, group_path
from plugin_operator.models import naming
from plugin_operator.models.resources import (
    API_VERSION,
    PLUGIN_PLURAL,
    Mode,
    ObjectRef,
    PluginSpec,
    SpecError,
    parse_plugin_spec,
)
from plugin_operator.models.status import Phase, PluginStatus, transition, with_condition

log = logging.getLogger(__name__)
SIDECAR_FIELD_MANAGER = "plugin-operator-sidecars"
_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
            "DaemonSet": "daemonsets"}


@dataclass(frozen=True)
class TargetKey:
    namespace: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def path(self) -> str:
        return group_path("apps/v1", self.namespace, _PLURALS[self.kind], self.name)


def target_of(spec: PluginSpec, namespace: str, config: OperatorConfig) -> TargetKey:
    if spec.sidecar_target is not None:
        return TargetKey(namespace, spec.sidecar_target.kind, spec.sidecar_target.name)
    return TargetKey(config.gateway_namespace, "Deployment", config.gateway_deployment)


async def workload_pods(kube: KubeApi, target: TargetKey) -> list[dict[str, Any]]:
    workload = await kube.get_or_none(target.path())
    if workload is None:
        return []
    match = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not match:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    pods = await kube.list(f"/api/v1/namespaces/{target.namespace}/pods",
                           label_selector=selector)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


@dataclass(frozen=True)
class _Member:
    obj: Mapping[str, Any]
    spec: PluginSpec
    artifact: Artifact


class SidecarService:
    def __init__(self, kube: KubeApi, config: OperatorConfig, events: EventRecorder,
                 on_plugin_changed: Callable[[ObjectRef], None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.config = config
        self.events = events
        self.on_plugin_changed = on_plugin_changed
        self.clock = clock

    async def _members(self, target: TargetKey, excluding: str | None) -> list[_Member]:
        plugins = await self.kube.list(group_path(API_VERSION, target.namespace, PLUGIN_PLURAL))
        members = []
        for obj in plugins:
            metadata = obj["metadata"]
            if metadata.get("deletionTimestamp") or metadata["name"] == excluding:
                continue
            try:
                spec = parse_plugin_spec(obj.get("spec") or {})
            except SpecError:
                continue
            if spec.mode is not Mode.SIDECAR or target_of(spec, target.namespace,
                                                          self.config) != target:
                continue
            status = PluginStatus.parse(obj.get("status"))
            if status.verified_for(int(metadata.get("generation", 1))) and status.artifact:
                members.append(_Member(obj, spec, Artifact(status.artifact.sha256,
                                                           status.artifact.size)))
        return members

    async def reconcile_target(self, target: TargetKey, excluding: str | None = None
                               ) -> float | None:
        """Make the target's sidecars exactly the wanted set, then report on each."""
        members = await self._members(target, excluding)
        workload = await self.kube.get_or_none(target.path())
        if workload is None:
            for member in members:
                await self._report(member, 0, 0, f"{target} does not exist; create it or fix "
                                                 "spec.sidecar.targetRef")
            return 30.0
        template = (workload.get("spec") or {}).get("template") or {}
        current_raw = ((template.get("metadata") or {}).get("annotations") or {}).get(
            naming.ANNOTATION_SIDECARS, "{}")
        try:
            current = {k: int(v) for k, v in json.loads(current_raw).items()}
        except (ValueError, AttributeError, TypeError):
            current = {}
        names = [m.obj["metadata"]["name"] for m in members]
        slots = assign_slots(names, current)
        sidecars = [Sidecar(m.obj["metadata"]["name"], m.spec, m.artifact,
                            slots[m.obj["metadata"]["name"]]) for m in members]
        patch = sidecar_apply_patch(target.kind, target.namespace, target.name, sidecars,
                                    self.config)
        try:
            await self.kube.apply(target.path(), patch, field_manager=SIDECAR_FIELD_MANAGER)
        except ApiError as exc:
            if exc.status != 403:
                raise
            for member in members:
                await self._report(member, 0, 0, f"the operator may not change {target}: add "
                                                 f"{target.name!r} to the chart's "
                                                 "operator.workloadNames")
            return 60.0
        pods = await workload_pods(self.kube, target)
        all_ready = True
        for member in members:
            container = naming.sidecar_container_name(member.obj["metadata"]["name"])
            carrying = [p for p in pods if any(
                c.get("name") == container for c in (p.get("spec") or {}).get("containers", []))]
            ready = sum(any(s.get("name") == container and s.get("ready") for s in
                            (p.get("status") or {}).get("containerStatuses") or [])
                        for p in carrying)
            all_ready &= bool(carrying) and ready == len(carrying)
            await self._report(member, len(carrying), ready, f"in {target}")
        return 30.0 if all_ready else 3.0

    async def _report(self, member: _Member, replicas: int, ready: int, where: str) -> None:
        """Phase and readiness of a Sidecar-mode Plugin, written only over the status this
        pass read: the Plugin's own pass writes the rest of it."""
        obj = member.obj
        status = PluginStatus.parse(obj.get("status"))
        generation = int(obj["metadata"].get("generation", 1))
        if replicas and ready == replicas:
            phase, message = Phase.RUNNING, f"sidecar ready in {ready} of {replicas} pods {where}"
        elif ready:
            phase, message = Phase.DEGRADED, f"sidecar ready in {ready} of {replicas} pods {where}"
        else:
            phase, message = Phase.STARTING, f"sidecar starting ({ready} of {replicas} pods "\
                f"ready) {where}"
        metrics.LAST_SEEN.plugin_phases[f"{obj['metadata']['namespace']}/"
                                        f"{obj['metadata']['name']}"] = str(phase)
        backend_ready = transition(status.conditions, "BackendReady", phase is Phase.RUNNING,
                                   str(phase), message, generation, self.clock())
        patch = replace(status, phase=phase, message=message, replicas=replicas,
                        ready_replicas=ready,
                        conditions=with_condition(status.conditions, backend_ready)
                        ).patch(obj.get("status"))
        if patch is None:
            return
        path = group_path(API_VERSION, obj["metadata"]["namespace"], PLUGIN_PLURAL,
                          obj["metadata"]["name"], "status")
        try:
            await self.kube.merge_patch(path, {"status": patch, "metadata": {
                "resourceVersion": obj["metadata"]["resourceVersion"]}})
        except ConflictError:
            # The Plugin changed since it was listed: its own pass runs again, and that
            # brings this target back.
            self.on_plugin_changed(ObjectRef(obj["metadata"]["namespace"],
                                             obj["metadata"]["name"]))
        except NotFoundError:
            return
