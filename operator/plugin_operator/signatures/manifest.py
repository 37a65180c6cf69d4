"""MANIFEST.txt: read the cleartext-signed JSON, check its fields and its signature.

Follows Grafana's order: parse the not-yet-verified text to learn ``keyId``, check the
required fields, look the key up, verify the OpenPGP signature, and use the verified text.
Every failure raises :class:`ManifestError`, which Grafana reports as status ``invalid``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pysequoia

from plugin_operator.signatures.keys import TrustedKeys, key_id_of

MANIFEST_FILE = "MANIFEST.txt"
SIGNATURE_TYPES = frozenset({"grafana", "commercial", "community", "private", "private-glob"})
_BEGIN_MESSAGE = "-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"


class ManifestError(ValueError):
    """MANIFEST.txt cannot be trusted; the message says why.

    ``key_id`` is the keyId the manifest claims, when it got that far (not verified).
    """

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


@dataclass(frozen=True)
class Manifest:
    plugin: str
    version: str
    key_id: str
    time: int
    files: Mapping[str, str]
    manifest_version: str = ""
    signature_type: str = ""
    signed_by_org: str = ""
    signed_by_org_name: str = ""
    root_urls: tuple[str, ...] = ()

    @property
    def is_v2(self) -> bool:
        return self.manifest_version.startswith("2.")


def cleartext_body(raw: bytes) -> str:
    """The signed text of a cleartext-signed message, dash-unescaped, not verified."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("MANIFEST.txt is not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == _BEGIN_MESSAGE)
    except StopIteration:
        raise ManifestError("MANIFEST.txt is not an OpenPGP cleartext-signed message "
                            f"(no {_BEGIN_MESSAGE} line)") from None
    index = start + 1
    while index < len(lines) and lines[index].strip():  # armor headers, e.g. "Hash: SHA512"
        index += 1
    body: list[str] = []
    for line in lines[index + 1:]:
        if line.rstrip() == _BEGIN_SIGNATURE:
            return "\n".join(body)
        body.append(line[2:] if line.startswith("- ") else line)
    raise ManifestError(f"MANIFEST.txt has no {_BEGIN_SIGNATURE} block; it is truncated "
                        "or not signed")


def _fold_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    # Grafana decodes with Go's encoding/json, which matches keys case-insensitively.
    return {key.lower(): value for key, value in data.items()}


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key.lower())
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"manifest field {key} must be a string")
    return value


def parse_manifest_json(text: str | bytes) -> Manifest:
    """Decode and validate the manifest JSON the way Grafana does (fields, v2 fields)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ManifestError("manifest must be a JSON object")
    folded = _fold_keys(data)
    time = folded.get("time") or 0
    if isinstance(time, bool) or not isinstance(time, int):
        raise ManifestError("manifest field time must be an integer (milliseconds)")
    files = folded.get("files") or {}
    if not isinstance(files, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ManifestError("manifest field files must map paths to SHA-256 strings")
    root_urls = folded.get("rooturls") or []
    if not isinstance(root_urls, list) or not all(isinstance(u, str) for u in root_urls):
        raise ManifestError("manifest field rootUrls must be a list of URLs")
    manifest = Manifest(
        plugin=_string(folded, "plugin"),
        version=_string(folded, "version"),
        key_id=_string(folded, "keyId"),
        time=time,
        files=dict(files),
        manifest_version=_string(folded, "manifestVersion"),
        signature_type=_string(folded, "signatureType"),
        signed_by_org=_string(folded, "signedByOrg"),
        signed_by_org_name=_string(folded, "signedByOrgName"),
        root_urls=tuple(root_urls),
    )
    _require_fields(manifest)
    return manifest


def _require_fields(manifest: Manifest) -> None:
    required: list[tuple[str, object]] = [
        ("plugin", manifest.plugin), ("version", manifest.version),
        ("keyId", manifest.key_id), ("time", manifest.time), ("files", manifest.files)]
    if manifest.is_v2:
        required += [("signedByOrg", manifest.signed_by_org),
                     ("signedByOrgName", manifest.signed_by_org_name)]
    for name, value in required:
        if not value:
            raise ManifestError(f"manifest field {name} is required")
    if manifest.is_v2 and manifest.signature_type not in SIGNATURE_TYPES:
        raise ManifestError(f"manifest signatureType {manifest.signature_type!r} is not one of "
                            f"{', '.join(sorted(SIGNATURE_TYPES))}")


def read_manifest(raw: bytes, keys: TrustedKeys) -> Manifest:
    """Verify a MANIFEST.txt against the trusted keys and return its verified content."""
    unverified = parse_manifest_json(cleartext_body(raw))
    cert = keys.lookup(unverified.key_id)
    if cert is None:
        raise ManifestError(
            f"manifest is signed with key {unverified.key_id}, which is not trusted; add the "
            "signer's public key with --trusted-key (operator: trustedKeys)",
            unverified.key_id.lower())
    try:
        verified = pysequoia.verify(bytes=raw, store=lambda _issuers: [cert])
    except Exception as exc:  # pysequoia raises RuntimeError with a Rust backtrace
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ManifestError(f"manifest signature does not verify with key "
                            f"{unverified.key_id}: {message}", unverified.key_id.lower()) from None
    signers = {str(sig.certificate).lower() for sig in verified.valid_sigs}
    if str(cert.fingerprint).lower() not in signers:
        raise ManifestError(f"manifest is not signed by key {key_id_of(cert)}")
    if verified.bytes is None:
        raise ManifestError("manifest signature verified but carries no signed text")
    manifest = parse_manifest_json(bytes(verified.bytes))
    if manifest.key_id.lower() != unverified.key_id.lower():
        raise ManifestError("manifest keyId changed between the signed and shown text")
    return manifest
