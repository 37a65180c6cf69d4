"""Reconcile one Plugin: package, pods, Service, status and events.

Every pass starts from the Plugin, its pods and its Service as the apiserver has them now,
and does only what the difference calls for. Kopf's watch events and timers decide *when* a
pass runs (see handlers.py); this module decides *what* it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from plugin_operator.controller import metrics
from plugin_operator.controller.backend_pods import BackendPods
from plugin_operator.controller.backoff import Backoff
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.events import EventRecorder
from plugin_operator.controller.images import ImageUnpacker, image_origin
from plugin_operator.controller.packages import (
    PackageError,
    PackageInProgress,
    PackagePipeline,
    VerifiedPackage,
)
from plugin_operator.controller.plugin_sources import PluginSources
from plugin_operator.controller.podspec import PluginRef
from plugin_operator.controller.sidecars import SidecarService, TargetKey, target_of
from plugin_operator.controller.status import grafana_compatibility, phase_message
from plugin_operator.controller.watch_cache import WatchCaches, read_through
from plugin_operator.kube.rest import ConflictError, KubeApi, NotFoundError, core_path, group_path
from plugin_operator.models import naming
from plugin_operator.models.resources import (
    API_VERSION,
    PLUGIN_PLURAL,
    CatalogSource,
    ImageSource,
    Mode,
    ObjectRef,
    PluginSpec,
    SpecError,
    parse_plugin_spec,
)
from plugin_operator.models.status import (
    ArtifactStatus,
    Phase,
    PluginInfo,
    PluginStatus,
    SignatureStatus,
    transition,
    with_condition,
)
from plugin_operator.signatures.model import SignatureResult

log = logging.getLogger(__name__)

# Pod and Plugin watch events drive every pass that matters; these timers are a safety net
# (a lost event, a restarted watch), so they stay long: at thousands of Plugins, short
# timers would be most of the operator's work.
RESYNC_SECONDS = 300.0
NOT_READY_RECHECK_SECONDS = 60.0
IN_PROGRESS_RECHECK_SECONDS = 30.0
SIDECAR_FINALIZER = "plugin-operator.dev/sidecar-cleanup"
SIGNATURE_CODES = {"signatureMissing", "signatureInvalid", "signatureModified"}
# A status write that lost a race with the other writer (Sidecar mode) runs again this soon.
CONFLICT_RECHECK_SECONDS = 1.0


def _parse_target(text: str) -> TargetKey:
    kind, _, rest = text.partition(" ")
    namespace, _, name = rest.partition("/")
    return TargetKey(namespace, kind, name)


def plugin_path(key: ObjectRef, subresource: str | None = None) -> str:
    return group_path(API_VERSION, key.namespace, PLUGIN_PLURAL, key.name, subresource)


def signature_status(signature: SignatureResult, error_code: str = "") -> SignatureStatus:
    return SignatureStatus(str(signature.status), str(signature.type or ""),
                           signature.org_name or signature.org or "", signature.key_id or "",
                           error_code)


class PluginService:
    def __init__(self, kube: KubeApi, config: OperatorConfig, pipeline: PackagePipeline,
                 backoff: Backoff, events: EventRecorder, sidecars: SidecarService,
                 on_target_changed: Callable[[TargetKey], None], images: ImageUnpacker,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 caches: WatchCaches | None = None) -> None:
        """``caches``: the Plugins and archive ConfigMaps as the watches last delivered them
        (and as our own writes answered), read instead of GETs; without them every pass
        GETs what it reads."""
        self.kube = kube
        self.cache = caches.plugins if caches else None
        self.sidecars = sidecars
        self.on_target_changed = on_target_changed
        self.config = config
        self.backoff = backoff
        self.events = events
        self.clock = clock
        self.pods = BackendPods(kube, config, backoff, events)
        self.sources = PluginSources(kube, pipeline, images,
                                     caches.configmaps if caches else None)

    async def reconcile(self, key: ObjectRef) -> float | None:
        """One pass; returns seconds until the next one should run (None: on events only)."""
        obj = await read_through(self.cache, key,
                                 lambda: self.kube.get_or_none(plugin_path(key)))
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self.backoff.forget(str(key))
            self.pods.forget_services(key)
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
        status = PluginStatus.parse(obj.get("status"))
        try:
            spec = parse_plugin_spec(obj.get("spec") or {})
        except SpecError as exc:
            await self._reject(key, obj, "specInvalid", f"{exc}; fix the Plugin's spec", None)
            return None
        ref = PluginRef(key.namespace, key.name, obj["metadata"]["uid"])
        try:
            package = await self.sources.resolve(ref, spec, status, generation)
        except PackageInProgress as progress:
            await self._in_progress(key, obj, progress.message, generation)
            return IN_PROGRESS_RECHECK_SECONDS
        except PackageError as exc:
            if exc.retryable:
                return await self._pending(key, obj, exc, generation)
            await self._reject(key, obj, exc.code, exc.message, exc)
            return None
        if spec.mode is Mode.SIDECAR:
            written = await self._run_sidecar(key, obj, spec, package, now, generation)
            return RESYNC_SECONDS if written else CONFLICT_RECHECK_SECONDS
        if status.sidecar_target:
            # It left Sidecar mode: the target's sidecar set no longer includes it.
            self.on_target_changed(_parse_target(status.sidecar_target))
        await self._set_finalizer(key, obj, present=False)
        return await self._run_pods(key, ref, obj, spec, package, now, generation)

    async def _finalize(self, key: ObjectRef, obj: dict[str, Any]) -> None:
        """A deleted Sidecar-mode Plugin leaves its workload before it may go."""
        if SIDECAR_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        target = PluginStatus.parse(obj.get("status")).sidecar_target
        if target:
            await self.sidecars.reconcile_target(_parse_target(target), excluding=key.name)
        await self._set_finalizer(key, obj, present=False)

    async def _set_finalizer(self, key: ObjectRef, obj: dict[str, Any],
                             present: bool) -> dict[str, Any]:
        """The Plugin as it is after the change (``obj`` itself when none was needed)."""
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if (SIDECAR_FINALIZER in finalizers) == present:
            return obj
        if present:
            finalizers.append(SIDECAR_FINALIZER)
        else:
            finalizers.remove(SIDECAR_FINALIZER)
        # resourceVersion makes this a compare-and-swap: another writer's finalizer is
        # never dropped; on a conflict the next pass tries again.
        try:
            changed = await self.kube.merge_patch(plugin_path(key), {"metadata": {
                "finalizers": finalizers,
                "resourceVersion": obj["metadata"]["resourceVersion"]}})
        except ConflictError:
            self._forget(key)
            raise
        self._remember(key, changed)
        return changed

    def _remember(self, key: ObjectRef, answer: Mapping[str, Any]) -> None:
        if self.cache is not None:
            self.cache.answered(key, answer)

    def _forget(self, key: ObjectRef) -> None:
        """After a lost compare-and-swap our copy is known to be old: the next pass GETs."""
        if self.cache is not None:
            self.cache.forget(key)

    async def _run_sidecar(self, key: ObjectRef, obj: dict[str, Any], spec: PluginSpec,
                           package: VerifiedPackage, now: datetime, generation: int) -> bool:
        """Verified facts into the status; the sidecar service owns phase and readiness.
        False when the status write lost a race with it."""
        target = target_of(spec, key.namespace, self.config)
        if target.namespace != key.namespace:
            await self._reject(key, obj, "sidecarNamespace",
                               f"a Sidecar-mode Plugin must live in the namespace of the "
                               f"workload it joins; the default target is {target}, so create "
                               f"the Plugin in namespace {target.namespace!r} or set "
                               "spec.sidecar.targetRef", None)
            return True
        obj = await self._set_finalizer(key, obj, present=True)
        # Pods of an earlier Pod-mode life go away; the sidecar service takes over status.
        await self.pods.delete_all(key)
        await self._delete_services(key)
        status = PluginStatus.parse(obj.get("status"))
        verified = self._verified_status(status, spec, package, generation, now)
        placing = status.phase in (None, Phase.PENDING, Phase.VERIFYING, Phase.REJECTED)
        ready = status.condition("BackendReady")
        new_status = replace(
            verified, sidecar_target=str(target),
            phase=Phase.STARTING if placing else status.phase,
            message=f"placing the backend as a sidecar in {target}" if placing
            else status.message,
            replicas=status.replicas, ready_replicas=status.ready_replicas,
            restarts=status.restarts,
            conditions=verified.conditions + ((ready,) if ready is not None else ()))
        written = await self._write_status(key, obj, status, new_status, guarded=True)
        self.on_target_changed(target)
        return written

    async def _delete_services(self, key: ObjectRef) -> None:
        self.pods.forget_services(key)
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.service_name(key.name)))
        await self.kube.delete(core_path(key.namespace, "services",
                                         naming.peers_service_name(key.name)))

    async def _run_pods(self, key: ObjectRef, ref: PluginRef, obj: dict[str, Any],
                        spec: PluginSpec, package: VerifiedPackage, now: datetime,
                        generation: int) -> float | None:
        status = PluginStatus.parse(obj.get("status"))
        backends = await self.pods.run(key, ref, obj, spec, package, now)
        ready = backends.ready
        message = phase_message(backends.phase, spec.replicas, ready, backends.pods)
        verified = self._verified_status(status, spec, package, generation, now)
        last_failure = status.last_failure
        if backends.failure is not None:
            failure = backends.failure.as_status(now)
            if failure.is_newer_than(last_failure):
                last_failure = failure
                self.events.emit(obj, "Warning", *backends.failure.event())
        all_ready = ready >= spec.replicas
        backend_ready = transition(status.conditions, "BackendReady",
                                   all_ready and spec.replicas > 0,
                                   "Ready" if all_ready else str(backends.phase), message,
                                   generation, now)
        await self._write_status(key, obj, status, replace(
            verified, phase=backends.phase, message=message,
            service_name=naming.service_name(key.name), replicas=backends.alive,
            ready_replicas=ready, restarts=backends.restarts, last_failure=last_failure,
            conditions=with_condition(verified.conditions, backend_ready)))
        if backends.waiting_for_backoff:
            return self.backoff.remaining(str(key))
        return RESYNC_SECONDS if all_ready else NOT_READY_RECHECK_SECONDS

    def _verified_status(self, status: PluginStatus, spec: PluginSpec,
                         package: VerifiedPackage, generation: int,
                         now: datetime) -> PluginStatus:
        """What a verified package says; the pods' or sidecars' part is left unset."""
        signature = package.signature
        previous = status.conditions
        plugin = package.plugin
        origin = image_origin(spec.source) if isinstance(spec.source, ImageSource) else {}
        return PluginStatus(
            observed_generation=generation,
            signature=signature_status(signature),
            plugin=PluginInfo(plugin.type, plugin.name, plugin.backend, package.executable,
                               plugin.streaming, plugin.alerting, plugin.version),
            artifact=ArtifactStatus(package.artifact.sha256, package.artifact.size,
                                    package.artifact.url(self.config), origin.get("image"),
                                    origin.get("imagePath"),
                                    # verify checked that this is the version resolved
                                    package.plugin.version
                                    if isinstance(spec.source, CatalogSource) else None),
            last_failure=status.last_failure,
            conditions=(
                transition(previous, "SignatureValid", True, "Verified",
                           f"signature {signature.status}"
                           + (f" ({signature.type}, {signature.org_name or signature.org})"
                              if signature.type else ""), generation, now),
                transition(previous, "Registered", True, "Registered",
                           f"{plugin.id} {plugin.version} is registered", generation, now),
                transition(previous, "GrafanaCompatible", *grafana_compatibility(
                    plugin, self.config.grafana_version), generation, now),
            ))

    async def _pending(self, key: ObjectRef, obj: dict[str, Any], error: PackageError,
                       generation: int) -> float:
        delay = self.backoff.record_failure(f"package:{key}")
        status = PluginStatus.parse(obj.get("status"))
        message = f"{error.message} (retrying in {delay:.0f}s)"
        if status.phase is not Phase.PENDING or status.message != message:
            self.events.emit(obj, "Warning", "FetchFailed", error.message)
        await self._write_status(key, obj, status, replace(
            status, phase=Phase.PENDING, message=message, observed_generation=generation))
        return delay

    async def _in_progress(self, key: ObjectRef, obj: dict[str, Any], message: str,
                           generation: int) -> None:
        status = PluginStatus.parse(obj.get("status"))
        await self._write_status(key, obj, status, replace(
            status, phase=Phase.VERIFYING, message=message, observed_generation=generation))

    async def _reject(self, key: ObjectRef, obj: dict[str, Any], code: str, message: str,
                      error: PackageError | None) -> None:
        now = self.clock()
        generation = int(obj["metadata"].get("generation", 1))
        status = PluginStatus.parse(obj.get("status"))
        previous = status.conditions
        signature_problem = code in SIGNATURE_CODES
        signature = error.signature if error is not None else None
        artifact = error.artifact if error is not None else None
        origin = error.origin if error is not None else {}
        rejected = PluginStatus(
            phase=Phase.REJECTED, message=f"[{code}] {message}",
            observed_generation=generation, replicas=0, ready_replicas=0,
            restarts=status.restarts or 0, last_failure=status.last_failure,
            signature=None if signature is None else signature_status(signature, code),
            artifact=None if artifact is None else ArtifactStatus(
                artifact.sha256, artifact.size, None, origin.get("image"),
                origin.get("imagePath")),
            conditions=(
                transition(previous, "SignatureValid", False if signature_problem else None,
                           code if signature_problem else "NotChecked", message, generation,
                           now),
                transition(previous, "Registered", False, code, message, generation, now),
                transition(previous, "BackendReady", False, "Rejected",
                           "nothing runs for a rejected plugin", generation, now),
            ))
        if status.phase is not Phase.REJECTED or status.message != rejected.message:
            self.events.emit(obj, "Warning", "Rejected", f"[{code}] {message}")
        await self.pods.delete_all(key)
        await self._delete_services(key)
        await self._write_status(key, obj, status, rejected)

    async def _write_status(self, key: ObjectRef, obj: Mapping[str, Any],
                            status: PluginStatus, new_status: PluginStatus,
                            guarded: bool = False) -> bool:
        """Write ``new_status`` over ``status`` (the one ``obj`` holds). ``guarded`` makes the
        write conditional on ``obj``'s resourceVersion, for a status with a second writer;
        False when that condition failed (a newer Plugin exists, and its event follows)."""
        metrics.LAST_SEEN.plugin_phases[str(key)] = str(new_status.phase or "")
        self._warn_if_incompatible(obj, status, new_status)
        patch = new_status.patch(obj.get("status"))
        if patch is None:
            return True
        body: dict[str, Any] = {"status": patch}
        if guarded:
            body["metadata"] = {"resourceVersion": obj["metadata"]["resourceVersion"]}
        try:
            self._remember(key, await self.kube.merge_patch(plugin_path(key, "status"), body))
        except NotFoundError:
            pass
        except ConflictError:
            self._forget(key)
            return False
        return True

    def _warn_if_incompatible(self, obj: Mapping[str, Any], status: PluginStatus,
                              new_status: PluginStatus) -> None:
        """One Warning event when the plugin stops fitting the Grafana version it runs as."""
        now, before = (new_status.condition("GrafanaCompatible"),
                       status.condition("GrafanaCompatible"))
        if now is not None and now.status == "False" and (
                before is None or before.message != now.message):
            self.events.emit(obj, "Warning", now.reason, now.message)
