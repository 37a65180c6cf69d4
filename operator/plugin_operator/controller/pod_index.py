"""Backend pods by Plugin, as the pod watch and our own writes' answers tell them.

A pass used to LIST its Plugin's pods, and the apiserver answers such a LIST by matching
the label of every pod in the namespace: with thousands of Plugins in one namespace, the
passes' LISTs cost the square of the pod count. The operator watches these pods anyway
(handlers.py), so it keeps them here, by Plugin.

A pass must never plan from less than exists: a replica it cannot see, it creates again,
perhaps under the replica's other name (a twin). Hence:

- what our creates, patches and deletions answer counts at once, and older watch events
  do not hide it (ObjectCache, which also keeps a pod deleted and created again under the
  same name apart from the one before);
- passes wait for one LIST of every backend pod at start, not a LIST per Plugin, which
  would bring the square back;
- that LIST is made again every few minutes. After a gap, kopf lists what exists and
  watches on, but reports no deletion it missed; a pod kept after it went is a replica
  that is never replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from plugin_operator.controller.watch_cache import ObjectCache
from plugin_operator.kube.rest import KubeApi, core_path
from plugin_operator.models import naming
from plugin_operator.models.resources import ObjectRef

log = logging.getLogger(__name__)
# As often as a Plugin's own resync (plugins.RESYNC_SECONDS): the same safety net, one
# LIST for all Plugins instead of one each.
RELIST_SECONDS = 300.0
RETRY_SECONDS = 5.0


def _key(pod: Mapping[str, Any]) -> ObjectRef:
    metadata = pod.get("metadata") or {}
    return ObjectRef(str(metadata.get("namespace", "")), str(metadata.get("name", "")))


def _plugin(pod: Mapping[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    plugin = labels.get(naming.LABEL_PLUGIN)
    return None if plugin is None else str(plugin)


def _slim(pod: Mapping[str, Any]) -> dict[str, Any]:
    # Passes read a pod's metadata and status only; its spec is most of its bytes, and ten
    # thousand pods are kept.
    return {"metadata": pod.get("metadata") or {}, "status": pod.get("status") or {}}


class PodIndex:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._pods: ObjectCache[ObjectRef] = ObjectCache(clock)
        self._plugin_of: dict[ObjectRef, str] = {}
        self._names: dict[tuple[str, str], set[str]] = {}  # (namespace, Plugin) -> pods
        self._listed = asyncio.Event()
        # While a LIST runs: pod -> uid of each that went meanwhile. A page may come after
        # the deletion's tombstone expired; it must not bring the pod back.
        self._went: dict[ObjectRef, str] | None = None

    def seen(self, pod: Mapping[str, Any], *, deleted: bool = False) -> set[str]:
        """A watch event of a pod. Returns the Plugins whose pods it may change: the one
        its label names and, if it was kept under another, that one too."""
        key = _key(pod)
        before = self._plugin_of.get(key)
        plugin = _plugin(pod)
        if deleted:
            self._gone(key, pod)
        elif plugin is None:
            self._pods.forget(key)  # no backend any more: someone took its label off
            self._place(key, None)
        elif self._pods.seen(key, _slim(pod)):
            self._place(key, plugin)
        return {p for p in (before, plugin) if p is not None}

    def answered(self, pod: Mapping[str, Any]) -> None:
        """A pod as the apiserver answered our create, patch or LIST."""
        key = _key(pod)
        plugin = _plugin(pod)
        if plugin is None:
            self._pods.forget(key)
            self._place(key, None)
        elif self._pods.answered(key, _slim(pod)):
            self._place(key, plugin)

    def deleted(self, namespace: str, name: str, uid: str,
                answer: Mapping[str, Any] | None) -> None:
        """Our deletion of pod ``name`` (``uid``) answered ``answer``; None: it was gone."""
        if answer is not None and answer.get("kind") != "Status" and \
                (answer.get("metadata") or {}).get("deletionTimestamp"):
            # Terminating, or gone already (grace 0): the answer cannot tell. Terminating is
            # the safe reading: the pod keeps its name and is not counted, and the watch
            # brings its end.
            self.answered(answer)
            return
        key = ObjectRef(namespace, name)
        if answer is not None and answer.get("kind") != "Status":
            self._gone(key, answer)
            return
        # It went after the version we keep of it, the only version we know to be older: a
        # pod created under its name since has a newer one, and is taken.
        self._gone(key, {"metadata": {"uid": uid,
                                      "resourceVersion": self._pods.version(key) or ""}})

    def _gone(self, key: ObjectRef, last: Mapping[str, Any]) -> None:
        if self._went is not None:
            self._went[key] = str((last.get("metadata") or {}).get("uid") or "")
        if self._pods.gone(key, last):
            self._place(key, None)

    def holds(self, namespace: str, name: str) -> bool:
        return ObjectRef(namespace, name) in self._plugin_of

    async def pods(self, namespace: str, plugin: str) -> list[dict[str, Any]]:
        """The Plugin's pods, once the first LIST has filled the index."""
        await self._listed.wait()
        found = []
        for name in sorted(self._names.get((namespace, plugin), ())):
            pod = self._pods.get(ObjectRef(namespace, name))
            if pod is not None:
                found.append(pod)
        return found

    async def keep_listed(self, kube: KubeApi, namespaces: tuple[str, ...]) -> None:
        """LIST every backend pod (in ``namespaces``, or everywhere when empty) now and
        every RELIST_SECONDS; runs until cancelled."""
        while True:
            try:
                for namespace in namespaces or (None,):
                    await self._list(kube, namespace)
            except Exception:
                # Passes wait for the first LIST: it is tried until it succeeds.
                log.exception("listing backend pods failed; again in %.0fs", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if not self._listed.is_set():
                log.info("backend pods listed: %d", len(self._plugin_of))
                self._listed.set()
            await asyncio.sleep(RELIST_SECONDS)

    async def _list(self, kube: KubeApi, namespace: str | None) -> None:
        path = "/api/v1/pods" if namespace is None else core_path(namespace, "pods")
        listed: set[ObjectRef] = set()
        version = ""
        went: dict[ObjectRef, str] = {}
        self._went = went
        try:
            async for page, snapshot in kube.pages(path, label_selector=naming.LABEL_PLUGIN):
                version = snapshot
                for pod in page:
                    key = _key(pod)
                    listed.add(key)
                    if went.get(key) != (pod.get("metadata") or {}).get("uid"):
                        self.answered(pod)
        finally:
            self._went = None
        if not version.isdigit():
            return  # what is kept cannot be ordered against the LIST: nothing is dropped
        for key in [k for k in self._plugin_of if namespace in (None, k.namespace)]:
            kept = self._pods.version(key)
            if key in listed or kept is None or not kept.isdigit() or \
                    int(kept) >= int(version):
                continue
            # Kept from before the LIST, yet not in it: it went while nobody told us.
            pod = self._pods.get(key) or {}
            uid = str((pod.get("metadata") or {}).get("uid") or "")
            self._gone(key, {"metadata": {"uid": uid, "resourceVersion": version}})

    def _place(self, key: ObjectRef, plugin: str | None) -> None:
        before = self._plugin_of.get(key)
        if before == plugin:
            return
        if before is not None:
            names = self._names[(key.namespace, before)]
            names.discard(key.name)
            if not names:
                del self._names[(key.namespace, before)]
        if plugin is None:
            del self._plugin_of[key]
        else:
            self._plugin_of[key] = plugin
            self._names.setdefault((key.namespace, plugin), set()).add(key.name)
