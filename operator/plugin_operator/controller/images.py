"""Plugins delivered as images: copy the plugin folder out into the artifact cache.

The operator cannot read an image itself (the kubelet pulls images, with the cluster's
credentials and policies), so it starts a short-lived pod that copies the folder out of the
image, zips it and uploads it to the operator (see ``podspec.unpack_pod``). From then on it
is an archive like any other: verified, cached by digest and fetched by the backend pods.
Every pass reads that pod as the apiserver has it and decides from what it shows.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_operator.controller.artifacts import ArtifactStore, UploadDesk
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.packages import PackageError, PackageInProgress
from plugin_operator.controller.podspec import (
    Artifact,
    PluginRef,
    image_source_hash,
    unpack_pod,
)
from plugin_operator.kube.rest import ConflictError, KubeApi, core_path
from plugin_operator.models import naming
from plugin_operator.models.resources import ImageSource, ObjectRef
from plugin_operator.models.status import ArtifactStatus

log = logging.getLogger(__name__)

# Waiting reasons that mean the kubelet cannot get the image (it keeps trying by itself).
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "ErrImageNeverPull", "RegistryUnavailable"})


class UnpackProgress(enum.Enum):
    RUNNING = "running"
    PULL_FAILING = "pullFailing"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class UnpackObservation:
    progress: UnpackProgress
    detail: str = ""


def observe_unpack(pod: Mapping[str, Any]) -> UnpackObservation:
    """Where an unpack pod is, with what went wrong in the kubelet's or the tool's words."""
    status = pod.get("status") or {}
    containers = [*(status.get("initContainerStatuses") or []),
                  *(status.get("containerStatuses") or [])]
    if status.get("phase") == "Succeeded":
        return UnpackObservation(UnpackProgress.SUCCEEDED)
    if status.get("phase") == "Failed":
        for container in containers:
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended.get("exitCode"):
                message = (ended.get("message") or ended.get("reason") or "").strip()
                return UnpackObservation(
                    UnpackProgress.FAILED,
                    f"container {container['name']} exited with code {ended['exitCode']}"
                    + (f": {message.splitlines()[-1]}" if message else ""))
        return UnpackObservation(UnpackProgress.FAILED, status.get("message") or
                                 status.get("reason") or "the pod failed")
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            return UnpackObservation(UnpackProgress.PULL_FAILING,
                                     f"{waiting['reason']}: {waiting.get('message', '')}".strip())
    return UnpackObservation(UnpackProgress.RUNNING)


def image_origin(source: ImageSource) -> dict[str, str]:
    """What status.artifact records about an image source, to know the archive came from it."""
    return {"image": source.reference, "imagePath": source.path}


class ImageUnpacker:
    def __init__(self, kube: KubeApi, config: OperatorConfig, store: ArtifactStore,
                 desk: UploadDesk[ObjectRef]) -> None:
        self.kube = kube
        self.config = config
        self.store = store
        self.desk = desk

    async def artifact(self, plugin: PluginRef, source: ImageSource, generation: int,
                       recorded: ArtifactStatus) -> Artifact:
        """The archive of the plugin in ``source``'s image; raises PackageInProgress while
        its unpack pod works, and PackageError when it cannot."""
        sha256 = recorded.sha256
        if (sha256 and {"image": recorded.image, "imagePath": recorded.image_path} ==
                image_origin(source) and self.store.has(sha256)):
            return Artifact(sha256, self.store.size(sha256))
        source_hash = image_source_hash(source, generation)
        name = naming.unpack_pod_name(plugin.name, source_hash)
        await self._delete_others(plugin, keep=name)
        pod = await self.kube.get_or_none(core_path(plugin.namespace, "pods", name))
        where = f"image {source.reference} (pod {name})"
        if pod is None:
            token = self.desk.expect(ObjectRef(plugin.namespace, plugin.name))
            try:
                await self.kube.create(core_path(plugin.namespace, "pods"),
                                       unpack_pod(plugin, source, source_hash, token,
                                                  self.config))
            except ConflictError:
                self.desk.close(token)  # another pass made it a moment ago
            raise PackageInProgress(f"copying the plugin out of {where}")
        token = (pod["metadata"].get("annotations") or {}).get(
            naming.ANNOTATION_UPLOAD_TOKEN, "")
        upload = self.desk.arrived(token)
        if upload is not None:
            self.desk.close(token)
            await self._delete(plugin.namespace, name)
            return Artifact(upload.sha256, upload.size)
        observed = observe_unpack(pod)
        if observed.progress is UnpackProgress.FAILED:
            self.desk.close(token)
            raise PackageError("imageUnpackFailed",
                               f"could not copy the plugin out of {where}: {observed.detail}. "
                               "Fix the image or spec.source.image.path; to try the same "
                               f"image again, delete pod {name}")
        if not self.desk.knows(token) and not pod["metadata"].get("deletionTimestamp"):
            # Made by an earlier run of the operator, whose tokens died with it.
            await self._delete(plugin.namespace, name)
            raise PackageInProgress(f"replacing the unpack pod of an earlier operator run "
                                    f"for {where}")
        if observed.progress is UnpackProgress.PULL_FAILING:
            raise PackageError("imagePullFailed",
                               f"the kubelet cannot pull {source.reference}: {observed.detail}"
                               ". Check the reference, that the image exists, and the pull "
                               "credentials of the namespace's default ServiceAccount",
                               retryable=True)
        raise PackageInProgress(f"copying the plugin out of {where}")

    async def _delete_others(self, plugin: PluginRef, keep: str) -> None:
        """Unpack pods of earlier generations or image sources have nothing left to do."""
        pods = await self.kube.list(core_path(plugin.namespace, "pods"),
                                    label_selector=f"{naming.LABEL_UNPACKS}={plugin.name}")
        for pod in pods:
            name = pod["metadata"]["name"]
            if name != keep and not pod["metadata"].get("deletionTimestamp"):
                self.desk.close((pod["metadata"].get("annotations") or {}).get(
                    naming.ANNOTATION_UPLOAD_TOKEN, ""))
                await self._delete(plugin.namespace, name)

    async def _delete(self, namespace: str, name: str) -> None:
        await self.kube.delete(core_path(namespace, "pods", name), grace_period_seconds=0)

    async def forget(self, plugin: PluginRef) -> None:
        """The Plugin no longer comes from an image: its unpack pods go."""
        await self._delete_others(plugin, keep="")
