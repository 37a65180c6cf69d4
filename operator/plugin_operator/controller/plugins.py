"""Reconcile one Plugin: package, pods, Service, status and events.

Every pass starts from the Plugin, its pods and its Service as the apiserver has them now,
and does only what the difference calls for. Kopf's watch events and timers decide *when* a
pass runs (see handlers.py); this module decides *what* it does.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from plugin_operator.controller import metrics
from plugin_operator.controller.backend_pods import BackendPods
from plugin_operator.controller.backoff import Backoff
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.images import ImageUnpacker, image_origin
from plugin_operator.controller.packages import (
    BytesInput,
    PackageError,
    PackageInProgress,
    PackagePipeline,
    UrlInput,
    VerifiedPackage,
)
from plugin_operator.controller.podspec import PluginRef
from plugin_operator.controller.sidecars import SidecarService, TargetKey, target_of
from plugin_operator.controller.status import (
    Phase,
    condition,
    grafana_compatibility,
    is_newer,
    phase_message,
)
from plugin_operator.controller.status_patch import merge_patch
from plugin_operator.kube.rest import KubeApi, NotFoundError, core_path, group_path
from plugin_operator.models import naming
from plugin_operator.models.resources import (
    API_VERSION,
    PLUGIN_PLURAL,
    ConfigMapSource,
    ImageSource,
    Mode,
    ObjectRef,
    PluginSpec,
    SpecError,
    UrlSource,
    parse_plugin_spec,
)

log = logging.getLogger(__name__)

# Pod and Plugin watch events drive every pass that matters; these timers are a safety net
# (a lost event, a restarted watch), so they stay long: at thousands of Plugins, short
# timers would be most of the operator's work.
RESYNC_SECONDS = 300.0
NOT_READY_RECHECK_SECONDS = 60.0
IN_PROGRESS_RECHECK_SECONDS = 30.0
SIDECAR_FINALIZER = "plugin-operator.dev/sidecar-cleanup"
SIGNATURE_CODES = {"signatureMissing", "signatureInvalid", "signatureModified"}


def _parse_target(text: str) -> TargetKey:
    kind, _, rest = text.partition(" ")
    namespace, _, name = rest.partition("/")
    return TargetKey(namespace, kind, name)


def plugin_path(key: ObjectRef, subresource: str | None = None) -> str:
    return group_path(API_VERSION, key.namespace, PLUGIN_PLURAL, key.name, subresource)


class PluginService:
    def __init__(self, kube: KubeApi, config: OperatorConfig, pipeline: PackagePipeline,
                 backoff: Backoff, events: EventRecorder, sidecars: SidecarService,
                 on_target_changed: Callable[[TargetKey], None], images: ImageUnpacker,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.images = images
        self.sidecars = sidecars
        self.on_target_changed = on_target_changed
        self.config = config
        self.pipeline = pipeline
        self.backoff = backoff
        self.events = events
        self.clock = clock
        self.pods = BackendPods(kube, config, backoff, events)

    async def reconcile(self, key: ObjectRef) -> float | None:
        """One pass; returns seconds until the next one should run (None: on events only)."""
        obj = await self.kube.get_or_none(plugin_path(key))
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self.backoff.forget(str(key))
            metrics.LAST_SEEN.plugin_phases.pop(str(key), None)
            if obj is not None:
                await self._finalize(key, obj)
            return None
        with metrics.RECONCILE_SECONDS.labels("Plugin").time():
            try:
                result = await self._reconcile(key, obj)
            except Exception:
                metrics.RECONCILES.labels("Plugin", "error").inc()
                raise
        metrics.RECONCILES.labels("Plugin", "ok").inc()
        return result

    async def _reconcile(self, key: ObjectRef, obj: dict[str, Any]) -> float | None:
        now = self.clock()
        generation = int(obj["metadata"].get("generation", 1))
        status: dict[str, Any] = dict(obj.get("status") or {})
        try:
            spec = parse_plugin_spec(obj.get("spec") or {})
        except SpecError as exc:
            await self._reject(key, obj, "specInvalid", f"{exc}; fix the Plugin's spec", None)
            return None
        ref = PluginRef(key.namespace, key.name, obj["metadata"]["uid"])
        try:
            package = await self._package(ref, spec, status, generation)
        except PackageInProgress as progress:
            await self._in_progress(key, obj, progress.message, generation)
            return IN_PROGRESS_RECHECK_SECONDS
        except PackageError as exc:
            if exc.retryable:
                return await self._pending(key, obj, exc, generation)
            await self._reject(key, obj, exc.code, exc.message, exc)
            return None
        previous_target = str((obj.get("status") or {}).get("sidecarTarget") or "")
        if spec.mode is Mode.SIDECAR:
            await self._run_sidecar(key, obj, spec, package, now, generation)
            return RESYNC_SECONDS
        if previous_target:
            # It left Sidecar mode: the target's sidecar set no longer includes it.
            self.on_target_changed(_parse_target(previous_target))
        await self._set_finalizer(key, obj, present=False)
        return await self._run_pods(key, ref, obj, spec, package, now, generation)

    async def _finalize(self, key: ObjectRef, obj: dict[str, Any]) -> None:
        """A deleted Sidecar-mode Plugin leaves its workload before it may go."""
        if SIDECAR_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        target = str((obj.get("status") or {}).get("sidecarTarget") or "")
        if target:
            await self.sidecars.reconcile_target(_parse_target(target), excluding=key.name)
        await self._set_finalizer(key, obj, present=False)

    async def _set_finalizer(self, key: ObjectRef, obj: Mapping[str, Any],
                             present: bool) -> None:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if (SIDECAR_FINALIZER in finalizers) == present:
            return
        if present:
            finalizers.append(SIDECAR_FINALIZER)
        else:
            finalizers.remove(SIDECAR_FINALIZER)
        # resourceVersion makes this a compare-and-swap: another writer's finalizer is
        # never dropped; on a conflict the next pass tries again.
        await self.kube.merge_patch(plugin_path(key), {"metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj["metadata"]["resourceVersion"]}})

    async def _run_sidecar(self, key: ObjectRef, obj: dict[str, Any], spec: PluginSpec,
                           package: VerifiedPackage, now: datetime, generation: int) -> None:
        target = target_of(spec, key.namespace, self.config)
        if target.namespace != key.namespace:
            await self._reject(key, obj, "sidecarNamespace",
                               f"a Sidecar-mode Plugin must live in the namespace of the "
                               f"workload it joins; the default target is {target}, so create "
                               f"the Plugin in namespace {target.namespace!r} or set "
                               "spec.sidecar.targetRef", None)
            return
        await self._set_finalizer(key, obj, present=True)
        # Pods of an earlier Pod-mode life go away; the sidecar service takes over status.
        await self.pods.delete_all(key)
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.service_name(key.name)))
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.peers_service_name(key.name)))
        status: dict[str, Any] = dict(obj.get("status") or {})
        new_status = self._verified_status(status, spec, package, generation, now)
        self._warn_if_incompatible(obj, status, new_status)
        new_status.update({"sidecarTarget": f"{target.kind} {target.namespace}/{target.name}",
                           "serviceName": None})
        for field in ("phase", "message", "replicas", "readyReplicas", "restarts"):
            new_status.setdefault(field, status.get(field))
        if status.get("phase") in (None, Phase.PENDING, Phase.VERIFYING, Phase.REJECTED):
            new_status["phase"] = str(Phase.STARTING)
            new_status["message"] = f"placing the backend as a sidecar in {target}"
        new_status["conditions"] += [c for c in status.get("conditions") or []
                                     if c["type"] == "BackendReady"]
        await self._write_status(key, obj, new_status)
        self.on_target_changed(target)

    async def _package(self, ref: PluginRef, spec: PluginSpec, status: Mapping[str, Any],
                       generation: int) -> VerifiedPackage:
        source = spec.source
        key = ObjectRef(ref.namespace, ref.name)
        if isinstance(source, ImageSource):
            recorded = str((status.get("artifact") or {}).get("sha256") or "")
            if recorded and status.get("observedGeneration") == generation:
                # After a restart: the mirrors' copy spares a new unpack pod.
                await self.pipeline.refill(recorded)
            artifact = await self.images.artifact(ref, source, generation,
                                                  status.get("artifact") or {})
            try:
                return await self.pipeline.verify(artifact, spec)
            except PackageError as exc:
                # Remembering which image gave this archive keeps a rejected image from
                # being unpacked again on every pass.
                raise PackageError(exc.code, exc.message, retryable=exc.retryable,
                                   signature=exc.signature, artifact=exc.artifact,
                                   origin=image_origin(source)) from exc
        if (status.get("artifact") or {}).get("image") or \
                status.get("phase") == Phase.VERIFYING:
            await self.images.forget(ref)  # it came, or was coming, from an image
        if isinstance(source, UrlSource):
            known = str((status.get("artifact") or {}).get("sha256") or "")
            # An unpinned URL is fetched once per spec generation, not on every pass: the
            # digest it gave is reused, from the store or else from the mirrors.
            reuse = bool(not source.sha256 and known and
                         status.get("observedGeneration") == generation)
            artifact = await self.pipeline.fetch(UrlInput(source.url, source.sha256),
                                                 known=known if reuse else None)
        else:
            artifact = await self.pipeline.fetch(await self._configmap_bytes(key, source))
        return await self.pipeline.verify(artifact, spec)

    async def _configmap_bytes(self, key: ObjectRef, source: ConfigMapSource) -> BytesInput:
        origin = f"ConfigMap {key.namespace}/{source.name} key {source.key}"
        try:
            cm = await self.kube.get(core_path(key.namespace, "configmaps", source.name))
        except NotFoundError:
            raise PackageError("sourceNotFound", f"{origin} does not exist; create it (kubectl "
                               f"create configmap {source.name} --from-file={source.key}=...)",
                               retryable=True) from None
        if source.key in (cm.get("binaryData") or {}):
            data = base64.b64decode(cm["binaryData"][source.key])
        elif source.key in (cm.get("data") or {}):
            data = cm["data"][source.key].encode()
        else:
            raise PackageError("sourceNotFound", f"{origin}: the ConfigMap has no such key",
                               retryable=True)
        return BytesInput(data, source.sha256, origin)

    async def _run_pods(self, key: ObjectRef, ref: PluginRef, obj: dict[str, Any],
                        spec: PluginSpec, package: VerifiedPackage, now: datetime,
                        generation: int) -> float | None:
        status: dict[str, Any] = dict(obj.get("status") or {})
        backends = await self.pods.run(key, ref, obj, spec, package, now)
        ready = backends.ready
        new_status = self._verified_status(status, spec, package, generation, now)
        self._warn_if_incompatible(obj, status, new_status)
        new_status.update({
            "phase": str(backends.phase),
            "message": phase_message(backends.phase, spec.replicas, ready, backends.pods),
            "serviceName": naming.service_name(key.name),
            "replicas": backends.alive,
            "readyReplicas": ready,
            "restarts": backends.restarts,
        })
        failure = backends.failure
        if failure is not None and is_newer(failure, status.get("lastFailure"), now):
            new_status["lastFailure"] = failure.as_status(now)
            self.events.emit(obj, "Warning", *failure.event())
        new_status["conditions"] = [
            *[c for c in new_status["conditions"] if c["type"] != "BackendReady"],
            condition(status.get("conditions") or [], "BackendReady",
                      ready >= spec.replicas and spec.replicas > 0,
                      "Ready" if ready >= spec.replicas else str(backends.phase),
                      new_status["message"], generation, now),
        ]
        await self._write_status(key, obj, new_status)
        if backends.waiting_for_backoff:
            return self.backoff.remaining(str(key))
        return RESYNC_SECONDS if ready >= spec.replicas else NOT_READY_RECHECK_SECONDS

    def _verified_status(self, status: Mapping[str, Any], spec: PluginSpec,
                         package: VerifiedPackage, generation: int,
                         now: datetime) -> dict[str, Any]:
        signature = package.signature
        previous = status.get("conditions") or []
        plugin = package.plugin
        return {
            "observedGeneration": generation,
            "signature": {"status": str(signature.status),
                          "type": str(signature.type or ""),
                          "org": signature.org_name or signature.org or "",
                          "keyId": signature.key_id or "", "errorCode": ""},
            "plugin": {"type": plugin.type, "name": plugin.name, "backend": plugin.backend,
                       "executable": package.executable, "streaming": plugin.streaming,
                       "alerting": plugin.alerting},
            "artifact": {"sha256": package.artifact.sha256, "size": package.artifact.size,
                         "url": package.artifact.url(self.config),
                         **(image_origin(spec.source) if isinstance(spec.source, ImageSource)
                            else {})},
            "lastFailure": status.get("lastFailure"),
            "conditions": [
                condition(previous, "SignatureValid", True, "Verified",
                          f"signature {signature.status}"
                          + (f" ({signature.type}, {signature.org_name or signature.org})"
                             if signature.type else ""), generation, now),
                condition(previous, "Registered", True, "Registered",
                          f"{plugin.id} {plugin.version} is registered", generation, now),
                condition(previous, "GrafanaCompatible", *grafana_compatibility(
                    plugin.grafana_dependency, self.config.grafana_version), generation, now),
            ],
        }

    def _warn_if_incompatible(self, obj: Mapping[str, Any], status: Mapping[str, Any],
                              new_status: Mapping[str, Any]) -> None:
        """One Warning event when the plugin stops fitting the Grafana version it runs as."""
        def compatible(conditions: Any) -> Any:
            return next((c for c in conditions or [] if c["type"] == "GrafanaCompatible"), {})
        now, before = compatible(new_status["conditions"]), compatible(status.get("conditions"))
        if now.get("status") == "False" and before.get("message") != now.get("message"):
            self.events.emit(obj, "Warning", now["reason"], now["message"])

    async def _pending(self, key: ObjectRef, obj: dict[str, Any], error: PackageError,
                       generation: int) -> float:
        delay = self.backoff.record_failure(f"package:{key}")
        status = dict(obj.get("status") or {})
        message = f"{error.message} (retrying in {delay:.0f}s)"
        if status.get("phase") != Phase.PENDING or status.get("message") != message:
            self.events.emit(obj, "Warning", "FetchFailed", error.message)
        status.update({"phase": str(Phase.PENDING), "message": message,
                       "observedGeneration": generation})
        await self._write_status(key, obj, status)
        return delay

    async def _in_progress(self, key: ObjectRef, obj: dict[str, Any], message: str,
                           generation: int) -> None:
        status = dict(obj.get("status") or {})
        status.update({"phase": str(Phase.VERIFYING), "message": message,
                       "observedGeneration": generation})
        await self._write_status(key, obj, status)

    async def _reject(self, key: ObjectRef, obj: dict[str, Any], code: str, message: str,
                      error: PackageError | None) -> None:
        now = self.clock()
        generation = int(obj["metadata"].get("generation", 1))
        status = dict(obj.get("status") or {})
        previous = status.get("conditions") or []
        signature_problem = code in SIGNATURE_CODES
        new_status: dict[str, Any] = {
            "phase": str(Phase.REJECTED),
            "message": f"[{code}] {message}",
            "observedGeneration": generation,
            "replicas": 0,
            "readyReplicas": 0,
            "restarts": int(status.get("restarts") or 0),
            "lastFailure": status.get("lastFailure"),
            "conditions": [
                condition(previous, "SignatureValid", False if signature_problem else None,
                          code if signature_problem else "NotChecked", message, generation, now),
                condition(previous, "Registered", False, code, message, generation, now),
                condition(previous, "BackendReady", False, "Rejected",
                          "nothing runs for a rejected plugin", generation, now),
            ],
        }
        if error is not None and error.signature is not None:
            signature = error.signature
            new_status["signature"] = {"status": str(signature.status),
                                       "type": str(signature.type or ""),
                                       "org": signature.org_name or signature.org or "",
                                       "keyId": signature.key_id or "", "errorCode": code}
        if error is not None and error.artifact is not None:
            new_status["artifact"] = {"sha256": error.artifact.sha256,
                                      "size": error.artifact.size, **error.origin}
        if status.get("phase") != Phase.REJECTED or status.get("message") != \
                new_status["message"]:
            self.events.emit(obj, "Warning", "Rejected", f"[{code}] {message}")
        await self.pods.delete_all(key)
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.service_name(key.name)))
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.peers_service_name(key.name)))
        await self._write_status(key, obj, new_status)

    async def _write_status(self, key: ObjectRef, obj: Mapping[str, Any],
                            new_status: dict[str, Any]) -> None:
        metrics.LAST_SEEN.plugin_phases[str(key)] = str(new_status.get("phase") or "")
        patch = merge_patch(obj.get("status"), new_status)
        if patch is None:
            return
        try:
            await self.kube.merge_patch(plugin_path(key, "status"), {"status": patch})
        except NotFoundError:
            return
