"""Where a Plugin's package comes from: its image, its URL, its ConfigMap or a plugin
catalog, fetched (or reused from what the status records) and verified."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

from plugin_operator.controller.images import ImageUnpacker, image_origin
from plugin_operator.controller.packages import (
    BytesInput,
    PackageError,
    PackagePipeline,
    UrlInput,
    VerifiedPackage,
)
from plugin_operator.controller.podspec import Artifact, PluginRef
from plugin_operator.controller.watch_cache import ObjectCache, read_through
from plugin_operator.kube.rest import KubeApi, core_path
from plugin_operator.models.resources import (
    CatalogSource,
    ConfigMapSource,
    ImageSource,
    ObjectRef,
    PluginSpec,
    UrlSource,
)
from plugin_operator.models.status import ArtifactStatus, Phase, PluginStatus
from plugin_operator.package.catalog import CatalogError, normalize_version
from plugin_operator.package.catalog_client import resolve


class PluginSources:
    def __init__(self, kube: KubeApi, pipeline: PackagePipeline, images: ImageUnpacker,
                 configmaps: ObjectCache[ObjectRef] | None = None) -> None:
        """``configmaps``: archive ConfigMaps as a watch keeps them (else each pass GETs)."""
        self.kube = kube
        self.pipeline = pipeline
        self.images = images
        self.configmaps = configmaps

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
        if isinstance(source, CatalogSource):
            return await self._from_catalog(spec, source, status, generation)
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

    async def _from_catalog(self, spec: PluginSpec, source: CatalogSource,
                            status: PluginStatus, generation: int) -> VerifiedPackage:
        config = self.pipeline.config
        base = source.url or config.catalog_url
        recorded = status.artifact or ArtifactStatus()
        # The version this generation resolved to, kept so that a restart (or a catalog
        # that published a newer one meanwhile) never changes what runs: `latest` is asked
        # once per spec generation, and the archive stays the one verified then.
        kept = recorded.catalog_version if (
            recorded.catalog_version and recorded.sha256
            and status.observed_generation == generation
            and (source.latest or normalize_version(recorded.catalog_version)
                 == normalize_version(source.version))) else None
        pin = source.sha256 or (recorded.sha256 if kept else None)
        if kept and pin and await self.pipeline.refill(pin):
            artifact, version = Artifact(pin, self.pipeline.store.size(pin)), kept
        else:
            artifact, version = await self._download(spec.plugin_id, base, kept or
                                                     source.version, pin, bool(source.sha256))
        # A catalog's `latest` leaves spec.version empty: the package must hold what it gave.
        return await self.pipeline.verify(artifact, replace(spec,
                                                            version=spec.version or version))

    async def _download(self, plugin_id: str, base: str, wanted: str, pin: str | None,
                        pinned_by_spec: bool) -> tuple[Artifact, str]:
        try:
            resolved = await asyncio.to_thread(
                resolve, base, plugin_id, wanted,
                grafana_version=self.pipeline.config.grafana_version)
        except CatalogError as exc:
            raise PackageError(exc.code, f"catalog {base}: {exc.message}",
                               retryable=exc.retryable) from None
        selection = resolved.selection
        published = selection.sha256 or None
        what = f"{plugin_id} {selection.version} ({selection.package})"
        if pin and published and published != pin:
            pinned = "spec.source.sha256 pins" if pinned_by_spec else "the verified archive is"
            raise PackageError("checksumMismatch",
                               f"the catalog {base} publishes SHA-256 {published} for {what}, "
                               f"but {pinned} {pin}; the catalog changed the archive, or the "
                               "pin is wrong")
        try:
            artifact = await self.pipeline.fetch(UrlInput(resolved.source, pin or published))
        except PackageError as exc:
            if exc.code != "archiveDigestMismatch":
                raise
            # Grafana's installer refuses such an archive too (plugin.checksumMismatch).
            raise PackageError("checksumMismatch",
                               f"the archive the catalog {base} gave for {what} does not have "
                               f"the SHA-256 {pin or published} expected of it: {exc.message}"
                               ) from exc
        return artifact, selection.version

    async def _configmap_bytes(self, key: ObjectRef, source: ConfigMapSource) -> BytesInput:
        origin = f"ConfigMap {key.namespace}/{source.name} key {source.key}"
        path = core_path(key.namespace, "configmaps", source.name)
        cm = await read_through(self.configmaps, ObjectRef(key.namespace, source.name),
                                lambda: self.kube.get_or_none(path))
        if cm is None:
            raise PackageError("sourceNotFound", f"{origin} does not exist; create it (kubectl "
                               f"create configmap {source.name} --from-file={source.key}=...)",
                               retryable=True)
        if source.key in (cm.get("binaryData") or {}):
            data = base64.b64decode(cm["binaryData"][source.key])
        elif source.key in (cm.get("data") or {}):
            data = cm["data"][source.key].encode()
        else:
            raise PackageError("sourceNotFound", f"{origin}: the ConfigMap has no such key",
                               retryable=True)
        return BytesInput(data, source.sha256, origin)
