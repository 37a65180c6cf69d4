"""Where a Plugin's package comes from: its image, its URL or its ConfigMap, fetched (or
reused from what the status records) and verified."""

from __future__ import annotations

import base64

from plugin_operator.controller.images import ImageUnpacker, image_origin
from plugin_operator.controller.packages import (
    BytesInput,
    PackageError,
    PackagePipeline,
    UrlInput,
    VerifiedPackage,
)
from plugin_operator.controller.podspec import PluginRef
from plugin_operator.kube.rest import KubeApi, NotFoundError, core_path
from plugin_operator.models.resources import (
    ConfigMapSource,
    ImageSource,
    ObjectRef,
    PluginSpec,
    UrlSource,
)
from plugin_operator.models.status import ArtifactStatus, Phase, PluginStatus


class PluginSources:
    def __init__(self, kube: KubeApi, pipeline: PackagePipeline, images: ImageUnpacker) -> None:
        self.kube = kube
        self.pipeline = pipeline
        self.images = images

    async def resolve(self, ref: PluginRef, spec: PluginSpec, status: PluginStatus,
                      generation: int) -> VerifiedPackage:
        """The verified package of ``spec``'s source; raises PackageInProgress while an
        image is unpacked, and PackageError when it cannot be had."""
        source = spec.source
        key = ObjectRef(ref.namespace, ref.name)
        recorded = status.artifact or ArtifactStatus()
        if isinstance(source, ImageSource):
            if recorded.sha256 and status.observed_generation == generation:
                # After a restart: the mirrors' copy spares a new unpack pod.
                await self.pipeline.refill(recorded.sha256)
            artifact = await self.images.artifact(ref, source, generation, recorded)
            try:
                return await self.pipeline.verify(artifact, spec)
            except PackageError as exc:
                # Remembering which image gave this archive keeps a rejected image from
                # being unpacked again on every pass.
                raise PackageError(exc.code, exc.message, retryable=exc.retryable,
                                   signature=exc.signature, artifact=exc.artifact,
                                   origin=image_origin(source)) from exc
        if recorded.image or status.phase is Phase.VERIFYING:
            await self.images.forget(ref)  # it came, or was coming, from an image
        if isinstance(source, UrlSource):
            # An unpinned URL is fetched once per spec generation, not on every pass: the
            # digest it gave is reused, from the store or else from the mirrors.
            reuse = bool(not source.sha256 and recorded.sha256 and
                         status.observed_generation == generation)
            artifact = await self.pipeline.fetch(UrlInput(source.url, source.sha256),
                                                 known=recorded.sha256 if reuse else None)
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
