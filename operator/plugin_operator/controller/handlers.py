"""Kopf's handlers: a thin layer that turns watch events into work-queue keys.

Kopf watches, lists on start (so every object is reconciled after a restart) and probes.
Everything else happens in the services behind the queues, including the one finalizer we
need (Sidecar-mode Plugins, whose sidecar lives in another object): level-based, it is
added and honoured by the Plugin reconcile itself rather than by a kopf deletion handler,
whose change detection copies every object on every event.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from plugin_operator.controller.references import ReferenceIndex, archive_references
from plugin_operator.controller.runtime import Runtime
from plugin_operator.controller.watch_cache import ObjectCache
from plugin_operator.models import naming
from plugin_operator.models.attachment import ATTACHMENT_PLURAL
from plugin_operator.models.resources import (
    DATASOURCE_PLURAL,
    GROUP,
    PLUGIN_PLURAL,
    VERSION,
    ObjectRef,
)


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf computes a deep copy of every object on every event to detect spec changes for
    change-detecting handlers. We register none, so that copy (a fifth of the operator's CPU
    at thousands of objects) is skipped."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Register every handler on ``registry``, bound to ``runtime``."""

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        # We register no change-detecting handlers, so kopf writes no finalizers and keeps no
        # diff-base: these only keep any annotation it might write under our group.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = _NoDiffBase(
            prefix=GROUP, key="last-handled-configuration")
        # Reconnect a watch that went quiet: the apiserver sends bookmarks every minute.
        settings.watching.inactivity_timeout = 90.0
        settings.watching.server_timeout = 600  # the apiserver wants an integer
        settings.watching.client_timeout = 660.0
        # List in pages and let idle per-object workers go soon: both bound the memory a
        # burst of thousands of objects costs.
        settings.watching.chunk_size = 250
        settings.batching.idle_timeout = 1.0
        # One replica (Recreate): no peering objects needed.
        settings.peering.standalone = True
        settings.posting.level = logging.WARNING
        settings.networking.request_timeout = 60.0
        await runtime.start()

    @kopf.on.login(registry=registry)
    def login(**event: Any) -> kopf.ConnectionInfo | None:
        # kopf's own readers of the ServiceAccount and of kubeconfig files; we do not ship
        # the synchronous kubernetes client that kopf would otherwise borrow credentials from.
        return (kopf.login_with_service_account(**event) or
                kopf.login_with_kubeconfig(**event))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop()

    references = ReferenceIndex()
    archives = ReferenceIndex(archive_references)  # Plugins by their archive's ConfigMap

    def users_of(kind: str, index: ReferenceIndex, cache: ObjectCache[ObjectRef],
                 event: dict[str, Any]) -> frozenset[str]:
        """Who refers to the object of ``event``. Only objects something refers to are kept;
        a pass that needs one the watch brought before its first user reads it once and
        keeps it from then on."""
        ref = ObjectRef(event["namespace"], event["name"])
        users = index.referrers(ref.namespace, kind, ref.name)
        if event["type"] == "DELETED":
            cache.seen(ref, None)
        elif users:
            cache.seen(ref, event["body"])
        else:
            cache.forget(ref)
        return users
    # namespace -> attachment name -> the Plugin names it lists: a Plugin's change (a new
    # version verified, a sidecar placed) brings back the attachments that list it.
    attachments: dict[str, dict[str, frozenset[str]]] = {}

    def requeue_attachments(namespace: str, plugin: str | None = None) -> None:
        for name, plugins in attachments.get(namespace, {}).items():
            if plugin is None or plugin in plugins:
                runtime.attachments.add(ObjectRef(namespace, name))
    # What DataSourceInstances read from their Plugin, per Plugin, to pass on only the
    # events that change it (a Plugin's status is written several times while it starts).
    plugin_facts: dict[tuple[str, str], tuple[Any, ...]] = {}

    # The generation each object was last queued for: an event that only carries our own
    # status write changes nothing we act on, and skipping it halves the passes.
    generations: dict[tuple[str, str, str], int] = {}

    def spec_changed(kind: str, event: dict[str, Any]) -> bool:
        key = (kind, event["namespace"], event["name"])
        if event["type"] == "DELETED":
            generations.pop(key, None)
            return True
        meta = event["meta"]
        generation = int(meta.get("generation") or 0)
        if meta.get("deletionTimestamp") or generations.get(key) != generation:
            generations[key] = generation
            return True
        return False

    # The event handlers are coroutines although they never wait: kopf runs a plain function
    # in a thread pool, a thread hop per watch event (a sixth of the operator's CPU at
    # thousands of objects), and the work queues must only be touched from the event loop.
    @kopf.on.event(GROUP, VERSION, PLUGIN_PLURAL, registry=registry)
    async def plugin_changed(**event: Any) -> None:
        namespace, name = event["namespace"], event["name"]
        gone = event["type"] == "DELETED"
        runtime.caches.plugins.seen(ObjectRef(namespace, name), None if gone else event["body"])
        archives.update(namespace, name, None if gone else event["spec"])
        if spec_changed("Plugin", event):
            runtime.plugins.add(ObjectRef(namespace, name))
        status = event["status"] or {}
        facts = (event["type"], event["spec"].get("pluginId"), event["spec"].get("mode"),
                 status.get("phase"), status.get("readyReplicas"),
                 (status.get("plugin") or {}).get("type"))
        if event["type"] == "DELETED":
            plugin_facts.pop((namespace, name), None)
        elif plugin_facts.get((namespace, name)) == facts:
            return
        else:
            plugin_facts[(namespace, name)] = facts
        requeue_attachments(namespace, name)
        for datasource in references.referrers(namespace, "Plugin", name):
            runtime.datasources.add(ObjectRef(namespace, datasource))

    @kopf.on.event("", "v1", "pods", labels={naming.LABEL_PLUGIN: kopf.PRESENT},
                   registry=registry)
    async def backend_pod_changed(**event: Any) -> None:
        runtime.plugins.add(ObjectRef(event["namespace"], event["labels"][naming.LABEL_PLUGIN]))

    @kopf.on.event("", "v1", "services", labels={naming.LABEL_PLUGIN: kopf.PRESENT},
                   registry=registry)
    async def backend_service_changed(**event: Any) -> None:
        # Our own applies come back here too; only someone else's change (or a deletion)
        # brings the Plugin's pass, which applies the Service again.
        gone = event["type"] == "DELETED"
        version = None if gone else (event["body"].get("metadata") or {}).get("resourceVersion")
        if runtime.plugin_service.pods.service_changed(event["namespace"], event["name"],
                                                       version):
            runtime.plugins.add(ObjectRef(event["namespace"],
                                          event["labels"][naming.LABEL_PLUGIN]))

    @kopf.on.event("", "v1", "pods", labels={naming.LABEL_UNPACKS: kopf.PRESENT},
                   registry=registry)
    async def unpack_pod_changed(**event: Any) -> None:
        runtime.plugins.add(ObjectRef(event["namespace"], event["labels"][naming.LABEL_UNPACKS]))

    @kopf.on.event(GROUP, VERSION, DATASOURCE_PLURAL, registry=registry)
    async def datasource_changed(**event: Any) -> None:
        namespace, name = event["namespace"], event["name"]
        gone = event["type"] == "DELETED"
        references.update(namespace, name, None if gone else event["spec"])
        runtime.caches.datasources.seen(ObjectRef(namespace, name),
                                        None if gone else event["body"])
        if spec_changed("DataSourceInstance", event):
            runtime.datasources.add(ObjectRef(namespace, name))
            requeue_attachments(namespace)

    @kopf.on.event(GROUP, VERSION, ATTACHMENT_PLURAL, registry=registry)
    async def attachment_changed(**event: Any) -> None:
        namespace, name = event["namespace"], event["name"]
        listed = attachments.setdefault(namespace, {})
        if event["type"] == "DELETED":
            listed.pop(name, None)
        else:
            listed[name] = frozenset(str(p.get("name")) for p in
                                     (event["spec"].get("plugins") or [])
                                     if isinstance(p, dict))
        if spec_changed("GrafanaAttachment", event):
            runtime.attachments.add(ObjectRef(namespace, name))

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def secret_changed(**event: Any) -> None:
        namespace = event["namespace"]
        for datasource in users_of("Secret", references, runtime.caches.secrets, event):
            runtime.datasources.add(ObjectRef(namespace, datasource))
            requeue_attachments(namespace)

    @kopf.on.event("", "v1", "configmaps", registry=registry)
    async def configmap_changed(**event: Any) -> None:
        # A new archive in a Plugin's ConfigMap is verified and rolled out at once.
        for plugin in users_of("ConfigMap", archives, runtime.caches.configmaps, event):
            runtime.plugins.add(ObjectRef(event["namespace"], plugin))
