"""From a Plugin's source to a verified archive in the cache, Grafana's loading pipeline.

Fetch (URL or bytes) into the content-addressed store, extract it defensively into a
scratch folder, verify every plugin in it, then check that it is the plugin and version the
Plugin asks for and that it has a backend for linux/amd64. The outcome is cached per
archive digest and policy, so a steady-state pass does no I/O at all.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from plugin_operator.controller.artifacts import ArtifactStore
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.podspec import Artifact
from plugin_operator.models.resources import PluginSpec, SignaturePolicy
from plugin_operator.package.archive import ArchiveError, ExtractionLimits, extract_archive
from plugin_operator.package.fetch import FetchError, download, first_of, normalise_sha256
from plugin_operator.package.plugin_json import PluginJson, PluginJsonError, resolve_executable
from plugin_operator.signatures.keys import TrustedKeyError, TrustedKeys
from plugin_operator.signatures.model import SignatureResult, VerifyConfig
from plugin_operator.signatures.policy import LoadPolicy, evaluate

log = logging.getLogger(__name__)
# One attempt at a mirror: they are in the cluster, and the plugin's own source comes next.
MIRROR_TIMEOUT_SECONDS = 10.0


class PackageError(Exception):
    """The package cannot be run. ``code`` is Grafana's error code where Grafana has one."""

    def __init__(self, code: str, message: str, *, retryable: bool = False,
                 signature: SignatureResult | None = None,
                 artifact: Artifact | None = None,
                 origin: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.signature = signature
        self.artifact = artifact
        # Where the artifact came from, recorded beside it in status (an image's reference).
        self.origin = dict(origin or {})


class PackageInProgress(Exception):  # noqa: N818 - a state to report, not a failure
    """The package is on its way (an image being unpacked); nothing is wrong yet."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VerifiedPackage:
    artifact: Artifact
    plugin: PluginJson
    signature: SignatureResult
    executable: str


@dataclass(frozen=True)
class UrlInput:
    url: str
    sha256: str | None


@dataclass(frozen=True)
class BytesInput:
    data: bytes
    sha256: str | None
    origin: str


ArchiveInput = UrlInput | BytesInput


def trusted_keys(config: OperatorConfig) -> TrustedKeys:
    keys = TrustedKeys.with_grafana_key()
    for path in config.trusted_keys:
        try:
            keys = keys.adding_file(path)
        except (TrustedKeyError, OSError) as exc:
            raise PackageError("trustedKeyInvalid",
                               f"the operator's trusted key {path} cannot be used: {exc}. Fix "
                               "the trustedKeys setting", retryable=True) from exc
    return keys


class PackagePipeline:
    def __init__(self, store: ArtifactStore, config: OperatorConfig) -> None:
        self.store = store
        self.config = config
        self.limits = ExtractionLimits(
            max_total_bytes=config.package_limits.max_total_bytes,
            max_files=config.package_limits.max_files,
            max_file_ratio=float(config.package_limits.max_ratio),
            max_total_ratio=float(config.package_limits.max_ratio))
        self._verdicts: dict[tuple[str, str, str, bool], VerifiedPackage | PackageError] = {}
        self._keys: TrustedKeys | None = None

    async def fetch(self, source: ArchiveInput, known: str | None = None) -> Artifact:
        """Put the archive into the store (a pinned digest already there is not fetched).

        A pinned digest, or ``known`` (the digest this source gave before, for an unpinned
        URL), missing from the store is first copied back from the mirrors: after a restart
        the cache is empty, and the plugin's source may be down or have changed."""
        pinned = _normalised(source.sha256)
        wanted = pinned or _normalised(known)
        if wanted and (self.store.has(wanted) or (isinstance(source, UrlInput)
                                                  and await self.refill(wanted))):
            return Artifact(wanted, self.store.size(wanted))
        if isinstance(source, BytesInput):
            digest, size = self.store.put_bytes(source.data)
            if pinned and digest != pinned:
                raise PackageError("archiveDigestMismatch",
                                   f"{source.origin} has SHA-256 {digest}, but spec.source.sha256"
                                   f" pins {pinned}; update the pin or the archive")
            return Artifact(digest, size)
        return await asyncio.to_thread(self._download, source.url, pinned)

    async def refill(self, sha256: str) -> bool:
        """Copy archive ``sha256`` from a mirror into the store; False when none has it."""
        if self.store.has(sha256):
            return True
        if not self.config.artifacts_mirrors:
            return False
        try:
            await asyncio.to_thread(self._from_mirrors, sha256)
        except FetchError as exc:
            log.info("artifact %s is on no mirror: %s", sha256, exc)
            return False
        log.info("artifact %s copied back from a mirror", sha256)
        return True

    def _from_mirrors(self, sha256: str) -> None:
        scratch = self.store.scratch()
        try:
            target = scratch / "archive"
            urls = [f"{m.rstrip('/')}/artifacts/{sha256}" for m in self.config.artifacts_mirrors]
            # download() checks the digest: a mirror can only give the right bytes.
            first_of(urls, lambda url: download(url, target, sha256,
                                                self.limits.max_total_bytes,
                                                timeout=MIRROR_TIMEOUT_SECONDS))
            self.store.adopt(target, sha256)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def forget(self, digests: list[str]) -> None:
        """Drop the verdicts of evicted archives."""
        gone = set(digests)
        self._verdicts = {k: v for k, v in self._verdicts.items() if k[0] not in gone}

    def _download(self, url: str, pinned: str | None) -> Artifact:
        scratch = self.store.scratch()
        try:
            target = scratch / "archive"
            digest, size = download(url, target, pinned, self.limits.max_total_bytes)
            self.store.adopt(target, digest)
            return Artifact(digest, size)
        except FetchError as exc:
            # A wrong digest stays wrong; a download error may pass.
            mismatch = "was pinned" in str(exc)
            raise PackageError("archiveDigestMismatch" if mismatch else "fetchFailed",
                               str(exc), retryable=not mismatch) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def verify(self, artifact: Artifact, spec: PluginSpec) -> VerifiedPackage:
        allow_unsigned = spec.signature_policy is SignaturePolicy.ALLOW_UNSIGNED
        key = (artifact.sha256, spec.plugin_id, spec.version, allow_unsigned)
        cached = self._verdicts.get(key)
        if cached is None:
            try:
                cached = await asyncio.to_thread(self._verify, artifact, spec, allow_unsigned)
            except PackageError as exc:
                cached = exc
            self._verdicts[key] = cached
        if isinstance(cached, PackageError):
            raise cached
        # Verified for this Plugin: pods may now fetch it (rejected archives never are).
        self.store.mark_verified(artifact.sha256)
        return cached

    def _verify(self, artifact: Artifact, spec: PluginSpec,
                allow_unsigned: bool) -> VerifiedPackage:
        if self._keys is None:
            self._keys = trusted_keys(self.config)
        scratch = self.store.scratch()
        try:
            root = scratch / "plugin"
            try:
                extract_archive(self.store.path(artifact.sha256), root, self.limits)
            except ArchiveError as exc:
                raise PackageError("archiveInvalid", str(exc), artifact=artifact) from exc
            # Unsigned plugins load only when both the Plugin asks for it and the operator's
            # configuration names the plugin id, like Grafana's allow_loading_unsigned_plugins.
            unsigned_ok = frozenset(self.config.allow_unsigned_plugins) if allow_unsigned \
                else frozenset()
            try:
                verdicts = evaluate(root, VerifyConfig(self._keys, self.config.app_url),
                                    LoadPolicy(allow_unsigned=unsigned_ok))
            except (PluginJsonError, ValueError) as exc:
                raise PackageError("pluginJsonInvalid", f"plugin.json: {exc}",
                                   artifact=artifact) from exc
            top = verdicts[0]
            for verdict in verdicts:
                if not verdict.decision.allowed:
                    message = verdict.decision.message
                    if (verdict.verification.signature.status == "unsigned"
                            and not allow_unsigned):
                        message += (" To run it anyway, set spec.signature.policy to "
                                    "AllowUnsigned and list the id in the operator's "
                                    "allowUnsignedPlugins.")
                    raise PackageError(str(verdict.decision.error_code), message,
                                       signature=top.verification.signature, artifact=artifact)
            plugin = top.verification.plugin
            signature = top.verification.signature
            if plugin.id != spec.plugin_id:
                raise PackageError("pluginIdMismatch",
                                   f"the package holds plugin {plugin.id!r}, but spec.pluginId "
                                   f"is {spec.plugin_id!r}; fix one of them",
                                   signature=signature, artifact=artifact)
            if plugin.version.lstrip("v") != spec.version.lstrip("v"):
                raise PackageError("versionMismatch",
                                   f"the package is version {plugin.version!r} of {plugin.id}, "
                                   f"but spec.version is {spec.version!r}; fix one of them",
                                   signature=signature, artifact=artifact)
            if not plugin.backend:
                raise PackageError("noBackend",
                                   f"{plugin.id} has no backend (plugin.json backend is not "
                                   "true); plugin-operator runs plugin backends only",
                                   signature=signature, artifact=artifact)
            try:
                executable = resolve_executable(top.verification.directory, plugin, "linux",
                                                "amd64")
            except PluginJsonError as exc:
                raise PackageError("failedBackendStart", str(exc), signature=signature,
                                   artifact=artifact) from exc
            return VerifiedPackage(artifact, plugin, signature, executable.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _normalised(sha256: str | None) -> str | None:
    try:
        return normalise_sha256(sha256)
    except FetchError:
        return None

