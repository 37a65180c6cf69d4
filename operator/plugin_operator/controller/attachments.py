"""Reconcile one GrafanaAttachment: install, address, provision, open the path, report.

Every pass starts from the attachment, its Plugins, DataSourceInstances, Secrets and the
workload as the apiserver has them now. What the attachment owns in the workload is one
server-side apply body under its own field manager, so a Plugin that leaves the list (or
the whole attachment, on deletion) disappears from the workload because we stop applying
it: the manifests themselves are built in attach_plan.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from plugin_operator.controller import attach_plan as plan
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.podspec import Artifact
from plugin_operator.controller.sidecars import TargetKey, target_of
from plugin_operator.kube.rest import ApiError, KubeApi, NotFoundError, core_path, group_path
from plugin_operator.models import naming
from plugin_operator.models.attachment import (
    ATTACHMENT_FINALIZER,
    ATTACHMENT_PLURAL,
    AttachmentSpec,
    parse_attachment_spec,
)
from plugin_operator.models.resources import (
    API_VERSION,
    DATASOURCE_PLURAL,
    PLUGIN_PLURAL,
    Mode,
    ObjectRef,
    SpecError,
    parse_datasource_spec,
    parse_plugin_spec,
)
from plugin_operator.models.status import (
    AttachmentEntry,
    AttachmentStatus,
    PluginStatus,
    transition,
)

log = logging.getLogger(__name__)
ROLLING_RECHECK_SECONDS = 3.0
RESYNC_SECONDS = 300.0
MISSING_RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Listed:
    """A listed Plugin: attachable (``plugin`` set) or not, and why."""

    name: str
    plugin: plan.AttachedPlugin | None
    message: str
    plugin_id: str = ""


def attachment_path(key: ObjectRef, subresource: str | None = None) -> str:
    return group_path(API_VERSION, key.namespace, ATTACHMENT_PLURAL, key.name, subresource)


def _workload_path(namespace: str, kind: str, name: str) -> str:
    return TargetKey(namespace, kind, name).path()


class AttachmentService:
    def __init__(self, kube: KubeApi, config: OperatorConfig, events: EventRecorder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.config = config
        self.events = events
        self.clock = clock

    async def reconcile(self, key: ObjectRef) -> float | None:
        obj = await self.kube.get_or_none(attachment_path(key))
        if obj is None:
            return None
        if obj["metadata"].get("deletionTimestamp"):
            await self._detach(key, obj)
            return None
        await self._set_finalizer(key, obj, present=True)
        try:
            spec = parse_attachment_spec(obj.get("spec") or {})
        except SpecError as exc:
            await self._write_status(key, obj, AttachmentStatus(summary="invalid spec"),
                                     False, "SpecInvalid", f"{exc}; fix the spec")
            return None
        return await self._attach(key, obj, spec)

    async def _attach(self, key: ObjectRef, obj: dict[str, Any],
                      spec: AttachmentSpec) -> float | None:
        ref = plan.AttachmentRef(key.namespace, key.name, obj["metadata"]["uid"])
        target = TargetKey(key.namespace, spec.workload.kind, spec.workload.name)
        workload = await self.kube.get_or_none(target.path())
        if workload is None:
            await self._write_status(key, obj, AttachmentStatus(workload=str(target),
                                                                summary="workload missing"),
                                     False, "WorkloadMissing",
                                     f"{target} does not exist; create it or fix "
                                     "spec.workloadRef")
            return MISSING_RECHECK_SECONDS
        container = spec.container or plan.first_container(workload)
        if container is None or container not in plan.container_names(workload):
            await self._write_status(key, obj, AttachmentStatus(workload=str(target),
                                                                summary="container missing"),
                                     False, "ContainerMissing",
                                     f"{target} has no container {container!r}; set "
                                     "spec.container to the Grafana server's container")
            return MISSING_RECHECK_SECONDS
        listed = [await self._resolve(key.namespace, name, target, workload)
                  for name in spec.plugin_names]
        attached = [item.plugin for item in listed if item.plugin is not None]
        datasources, ds_digest, ds_messages = await self._datasources(key.namespace, spec,
                                                                      attached)
        config_map = None
        if datasources:
            manifest = plan.datasources_configmap(ref, plan.provisioning_document(datasources))
            config_map = manifest["metadata"]["name"]
            await self.kube.apply(core_path(key.namespace, "configmaps", config_map), manifest,
                                  field_manager=plan.FIELD_MANAGER)
        patch = plan.workload_apply_patch(target.kind, key.namespace, target.name, container,
                                          spec, attached, datasources, ds_digest, config_map,
                                          self.config)
        try:
            applied = await self.kube.apply(target.path(), patch,
                                            field_manager=plan.FIELD_MANAGER)
        except ApiError as exc:
            if exc.status != 403:
                raise
            await self._write_status(key, obj, AttachmentStatus(workload=str(target),
                                                                summary="not allowed"),
                                     False, "WorkloadNotAllowed",
                                     f"the operator may not change {target}: add "
                                     f"{target.name!r} to the chart's operator.workloadNames")
            return MISSING_RECHECK_SECONDS
        if not datasources:
            await self.kube.delete(core_path(key.namespace, "configmaps",
                                             naming.attachment_object_name(key.name,
                                                                           "datasources")))
        await self._network_policy(ref, attached, workload)
        return await self._report(key, obj, target, listed, datasources, ds_messages, applied)

    async def _resolve(self, namespace: str, name: str, target: TargetKey,
                       workload: Mapping[str, Any]) -> Listed:
        obj = await self.kube.get_or_none(group_path(API_VERSION, namespace, PLUGIN_PLURAL,
                                                     name))
        if obj is None:
            return Listed(name, None, f"Plugin {name!r} does not exist in namespace "
                                      f"{namespace!r}")
        try:
            spec = parse_plugin_spec(obj.get("spec") or {})
        except SpecError as exc:
            return Listed(name, None, f"Plugin {name!r} has an invalid spec: {exc}")
        status = PluginStatus.parse(obj.get("status"))
        artifact = status.artifact
        if not status.verified_for(int(obj["metadata"].get("generation", 1))) or \
                artifact is None:
            return Listed(name, None, f"waiting for Plugin {name!r} to be verified (phase "
                                      f"{status.phase or 'Pending'})", spec.plugin_id)
        if spec.mode is Mode.SIDECAR:
            runs_in = target_of(spec, namespace, self.config)
            if runs_in != target:
                return Listed(name, None, f"Sidecar-mode Plugin {name!r} runs in {runs_in}, "
                                          f"not in {target}; set its spec.sidecar.targetRef "
                                          "to this workload or use mode Pod",
                              spec.plugin_id)
            annotations = (((workload.get("spec") or {}).get("template") or {}).get(
                "metadata") or {}).get("annotations") or {}
            try:
                port = int(json.loads(annotations.get(naming.ANNOTATION_SIDECARS, "{}"))[name])
            except (ValueError, KeyError, TypeError):
                return Listed(name, None, f"waiting for the sidecar of Plugin {name!r} to be "
                                          f"placed in {target}", spec.plugin_id)
            address = plan.sidecar_address(port)
        else:
            address = plan.pod_mode_address(name, namespace)
        return Listed(name, plan.AttachedPlugin(
            name=name, plugin_id=spec.plugin_id,
            version=spec.version or artifact.catalog_version or "",  # a catalog's latest
            artifact=Artifact(artifact.sha256, artifact.size),
            mode=spec.mode, address=address), "", spec.plugin_id)

    async def _datasources(self, namespace: str, spec: AttachmentSpec,
                           attached: list[plan.AttachedPlugin]
                           ) -> tuple[list[plan.ProvisionedDataSource], str, list[str]]:
        if not spec.provision_datasources or not attached:
            return [], "", []
        by_name = {p.name: p for p in attached}
        found, messages, versions = [], [], []
        for obj in await self.kube.list(group_path(API_VERSION, namespace, DATASOURCE_PLURAL)):
            name = obj["metadata"]["name"]
            try:
                ds = parse_datasource_spec(obj.get("spec") or {}, name)
            except SpecError:
                continue
            plugin = by_name.get(ds.plugin_name)
            if plugin is None:
                continue
            missing = []
            for secret in sorted(ds.secret_names()):
                secret_obj = await self.kube.get_or_none(core_path(namespace, "secrets", secret))
                if secret_obj is None:
                    missing.append(secret)
                else:
                    versions.append(f"{secret}@{secret_obj['metadata']['resourceVersion']}")
            if missing:
                # A pod mounting a missing Secret never starts: leave this one out.
                messages.append(f"datasource {ds.uid!r} is not provisioned: Secret "
                                f"{', '.join(missing)} does not exist")
                continue
            found.append(plan.ProvisionedDataSource(ds, plugin.plugin_id))
        if not found:
            return [], "", messages
        document = plan.provisioning_document(found)
        digest = hashlib.sha256((document + "\n".join(sorted(versions))).encode()).hexdigest()
        return found, digest[:16], messages

    async def _network_policy(self, ref: plan.AttachmentRef,
                              attached: list[plan.AttachedPlugin],
                              workload: Mapping[str, Any]) -> None:
        path = group_path("networking.k8s.io/v1", ref.namespace, "networkpolicies",
                          naming.attachment_object_name(ref.name, "grafana"))
        pod_mode = [p.name for p in attached if p.mode is Mode.POD]
        selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not pod_mode or not selector:
            await self.kube.delete(path)
            return
        await self.kube.apply(path, plan.network_policy(ref, pod_mode, selector),
                              field_manager=plan.FIELD_MANAGER)

    async def _report(self, key: ObjectRef, obj: dict[str, Any], target: TargetKey,
                      listed: list[Listed], datasources: list[plan.ProvisionedDataSource],
                      ds_messages: list[str], workload: Mapping[str, Any]) -> float:
        annotations = (((workload.get("spec") or {}).get("template") or {}).get(
            "metadata") or {}).get("annotations") or {}
        carried = plan.carried_plugins(annotations)
        finished = plan.rollout_finished(workload)
        entries: list[AttachmentEntry] = []
        current_count = 0
        for item in listed:
            plugin = item.plugin
            if plugin is None:
                entries.append(AttachmentEntry(item.name, item.plugin_id, message=item.message))
                continue
            carries = carried.get(plugin.plugin_id) == plugin.artifact.sha256[:16]
            current = carries and finished
            current_count += current
            entries.append(AttachmentEntry(
                item.name, item.plugin_id, attached=carries, current=current,
                message="" if current else f"rolling out {target} with version "
                                           f"{plugin.version}",
                version=plugin.version, sha256=plugin.artifact.sha256, mode=str(plugin.mode),
                address=plugin.address))
        ready = current_count == len(listed)
        message = (f"{current_count} of {len(listed)} plugins attached and current in "
                   f"{target}")
        if ds_messages:
            message += "; " + "; ".join(ds_messages)
        fields = AttachmentStatus(workload=str(target), plugins=tuple(entries),
                                  summary=f"{current_count}/{len(listed)}",
                                  datasources=tuple(d.spec.uid for d in datasources))
        await self._write_status(key, obj, fields, ready and not ds_messages,
                                 "Attached" if ready else "Attaching", message)
        return RESYNC_SECONDS if ready else ROLLING_RECHECK_SECONDS

    async def _write_status(self, key: ObjectRef, obj: Mapping[str, Any],
                            fields: AttachmentStatus, ready: bool, reason: str,
                            message: str) -> None:
        """``fields`` with the Ready condition and the generation they describe."""
        previous = AttachmentStatus.parse(obj.get("status"))
        generation = int(obj["metadata"].get("generation", 1))
        status = replace(fields, observed_generation=generation, conditions=(
            transition(previous.conditions, "Ready", ready, reason, message, generation,
                       self.clock()),))
        patch = status.patch(obj.get("status"))
        if patch is None:
            return
        if previous.conditions != status.conditions and not ready and \
                reason not in ("Attaching",):
            self.events.emit(obj, "Warning", reason, message)
        try:
            await self.kube.merge_patch(attachment_path(key, "status"), {"status": patch})
        except NotFoundError:
            return

    async def _detach(self, key: ObjectRef, obj: Mapping[str, Any]) -> None:
        """Remove everything the attachment added, then let it go."""
        if ATTACHMENT_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        try:
            spec = parse_attachment_spec(obj.get("spec") or {})
        except SpecError:
            spec = None
        if spec is not None:
            path = _workload_path(key.namespace, spec.workload.kind, spec.workload.name)
            if await self.kube.get_or_none(path) is not None:
                await self.kube.apply(path, plan.workload_apply_patch(
                    spec.workload.kind, key.namespace, spec.workload.name, "", spec, [], [], "",
                    None, self.config), field_manager=plan.FIELD_MANAGER)
        await self.kube.delete(core_path(key.namespace, "configmaps",
                                         naming.attachment_object_name(key.name, "datasources")))
        await self.kube.delete(group_path("networking.k8s.io/v1", key.namespace,
                                          "networkpolicies",
                                          naming.attachment_object_name(key.name, "grafana")))
        self.events.emit(obj, "Normal", "Detached", "removed the plugins, settings and "
                                                    "network policy this attachment added")
        await self._set_finalizer(key, obj, present=False)

    async def _set_finalizer(self, key: ObjectRef, obj: Mapping[str, Any],
                             present: bool) -> None:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if (ATTACHMENT_FINALIZER in finalizers) == present:
            return
        if present:
            finalizers.append(ATTACHMENT_FINALIZER)
        else:
            finalizers.remove(ATTACHMENT_FINALIZER)
        await self.kube.merge_patch(attachment_path(key), {"metadata": {
            "finalizers": finalizers, "resourceVersion": obj["metadata"]["resourceVersion"]}})
