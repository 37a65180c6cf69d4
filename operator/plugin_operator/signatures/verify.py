"""Compute a plugin's signature status in Grafana's order of checks.

1. no files -> invalid; 2. no MANIFEST.txt (or < 10 bytes) -> unsigned; 3. manifest
unreadable, unknown key, bad signature, missing fields -> invalid; 4. not manifest v2 ->
invalid; 5. id or version differ from plugin.json -> modified; 6. rootUrls set and none
matches the app URL -> invalid; 7. a listed file missing or different -> modified; 8. a file
present but not listed -> modified; otherwise valid. Nested plugins inherit the result of
the plugin whose directory contains them.

A plugin reached through a symlinked folder is checked in the folder the link resolves to,
as Grafana's finder records it. Inside that folder, files reached through links count when
the link stays inside the plugin; a link leading out of it makes Grafana's file walk fail
(``file ... not inside of plugin directory``), so the plugin never loads: reported here as
invalid, with the link named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from plugin_operator.package.discovery import FoundPlugin, find_plugins
from plugin_operator.package.plugin_json import PluginJson, load_plugin_json
from plugin_operator.signatures.files import PluginFilesError, plugin_files, sha256_file
from plugin_operator.signatures.manifest import MANIFEST_FILE, ManifestError, read_manifest
from plugin_operator.signatures.model import (
    SignatureResult,
    SignatureStatus,
    SignatureType,
    VerifyConfig,
)
from plugin_operator.signatures.rooturl import RootUrlError, url_match

# Grafana treats a MANIFEST.txt shorter than this as absent.
_MIN_MANIFEST_BYTES = 10


@dataclass(frozen=True)
class PluginVerification:
    """One plugin of a package: where it is, its plugin.json, and its signature."""

    directory: Path
    plugin: PluginJson
    signature: SignatureResult
    parent_id: str | None = None


def _invalid(reason: str, key_id: str | None = None) -> SignatureResult:
    return SignatureResult(SignatureStatus.INVALID, key_id=key_id, reason=reason)


def verify_plugin(plugin_dir: Path, config: VerifyConfig | None = None,
                  plugin: PluginJson | None = None) -> SignatureResult:
    """The signature status Grafana would compute for the plugin in ``plugin_dir``.

    Raises ``PluginJsonError`` when plugin.json itself is missing or invalid (Grafana would
    not discover such a plugin at all).
    """
    config = config or VerifyConfig()
    plugin = plugin or load_plugin_json(plugin_dir)
    try:
        files = plugin_files(plugin_dir)
    except PluginFilesError as exc:
        return _invalid(str(exc))
    if not files:
        return _invalid("the plugin directory holds no files")
    manifest_path = files.get(MANIFEST_FILE)
    if manifest_path is None:
        return SignatureResult(SignatureStatus.UNSIGNED, reason="no MANIFEST.txt")
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        return _invalid(f"cannot read MANIFEST.txt: {exc.strerror}")
    if len(raw) < _MIN_MANIFEST_BYTES:
        return SignatureResult(SignatureStatus.UNSIGNED, reason="MANIFEST.txt is empty")
    try:
        manifest = read_manifest(raw, config.trusted_keys)
    except ManifestError as exc:
        return _invalid(str(exc), exc.key_id)
    key_id = manifest.key_id.lower()
    if not manifest.is_v2:
        return _invalid(f"manifest version {manifest.manifest_version or '1'} is no longer "
                        "accepted; re-sign the plugin (manifest v2)", key_id)
    if manifest.plugin != plugin.id or manifest.version != plugin.version:
        return SignatureResult(
            SignatureStatus.MODIFIED, key_id=key_id,
            reason=f"the manifest signs {manifest.plugin} {manifest.version} but plugin.json "
                   f"says {plugin.id} {plugin.version}")
    if manifest.root_urls:
        try:
            allowed = url_match(manifest.root_urls, config.app_url, manifest.signature_type)
        except RootUrlError as exc:
            return _invalid(f"cannot match root URLs: {exc}", key_id)
        if not allowed:
            return _invalid(
                f"the signature is only valid at {', '.join(manifest.root_urls)}, not at "
                f"{config.app_url}; set the app URL to one of them or re-sign the plugin "
                "for this URL", key_id)
    missing, changed = [], []
    for rel, digest in sorted(manifest.files.items()):
        path = files.get(rel)
        if path is None:
            missing.append(rel)
            continue
        try:
            actual = sha256_file(path)
        except OSError:
            missing.append(rel)
            continue
        if actual != digest:
            changed.append(rel)
    unlisted = sorted(rel for rel in files
                      if rel not in manifest.files and not _exempt(rel, files))
    if missing or changed or unlisted:
        return SignatureResult(
            SignatureStatus.MODIFIED, key_id=key_id, reason=_modified_reason(
                missing, changed, unlisted),
            changed_files=tuple(changed), missing_files=tuple(missing),
            unlisted_files=tuple(unlisted))
    return SignatureResult(
        SignatureStatus.VALID, type=SignatureType(manifest.signature_type),
        org=manifest.signed_by_org, org_name=manifest.signed_by_org_name, key_id=key_id,
        reason="every file matches the signed manifest")


def _exempt(rel: str, files: dict[str, Path]) -> bool:
    """The root MANIFEST.txt, and a nested plugin's own MANIFEST.txt beside its plugin.json.

    Grafana's tests expect an app whose nested plugin carries its own, unlisted MANIFEST.txt
    to be valid (fixture nested-plugins); a MANIFEST.txt anywhere else must be listed.
    """
    if rel == MANIFEST_FILE:
        return True
    folder, _, name = rel.rpartition("/")
    return name == MANIFEST_FILE and f"{folder}/plugin.json" in files


def _modified_reason(missing: list[str], changed: list[str], unlisted: list[str]) -> str:
    parts = []
    for label, paths in (("changed", changed), ("missing", missing),
                         ("not in the manifest", unlisted)):
        if paths:
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5
                                            else "")
            parts.append(f"{label}: {shown}")
    return "files differ from the signed manifest (" + "; ".join(parts) + ")"


def verify_bundle(root: Path, config: VerifyConfig | None = None) -> list[PluginVerification]:
    """Verify the plugin at ``root`` and every plugin nested in it (the top one first).

    Symlinked folders are followed as Grafana's finder follows them; see
    :mod:`plugin_operator.package.discovery`.
    """
    found = find_plugins(root)
    if not found or found[0].real_directory != Path(os.path.realpath(root)):
        load_plugin_json(root)  # raises the clear "no plugin.json" error
    return verify_found(found, config)


def verify_found(found: list[FoundPlugin],
                 config: VerifyConfig | None = None) -> list[PluginVerification]:
    """Verify plugins as found on disk; the results keep the order found.

    A plugin whose real folder lies inside another's is nested: it takes the result of the
    nearest enclosing plugin, as Grafana's children take their parent's signature. The
    others are verified against their own MANIFEST.txt.
    """
    config = config or VerifyConfig()
    enclosing = {item.real_directory: _nearest_enclosing(item, found) for item in found}
    depth = {item.real_directory: _depth(item, enclosing) for item in found}
    results: dict[Path, PluginVerification] = {}
    # Outer plugins first, so that each nested plugin finds its parent's result.
    for item in sorted(found, key=lambda candidate: depth[candidate.real_directory]):
        parent_item = enclosing[item.real_directory]
        if parent_item is None:
            results[item.real_directory] = PluginVerification(
                item.directory, item.plugin, verify_plugin(item.directory, config, item.plugin))
            continue
        parent = results[parent_item.real_directory]
        inherited = replace(parent.signature, reason=f"inherited from {parent.plugin.id}: "
                                                     f"{parent.signature.reason}")
        results[item.real_directory] = PluginVerification(item.directory, item.plugin,
                                                          inherited, parent.plugin.id)
    return [results[item.real_directory] for item in found]


def _nearest_enclosing(item: FoundPlugin, found: list[FoundPlugin]) -> FoundPlugin | None:
    ancestors = [other for other in found if other.real_directory in item.real_directory.parents]
    return max(ancestors, key=lambda other: len(other.real_directory.parts), default=None)


def _depth(item: FoundPlugin, enclosing: dict[Path, FoundPlugin | None]) -> int:
    depth, parent = 0, enclosing[item.real_directory]
    while parent is not None:
        depth, parent = depth + 1, enclosing[parent.real_directory]
    return depth
