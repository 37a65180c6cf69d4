"""The vocabulary of signature checking: statuses, types, results and configuration."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from plugin_operator.signatures.keys import TrustedKeys

# Grafana's default [server] root_url; used when no app URL is configured, as Grafana does.
GRAFANA_DEFAULT_APP_URL = "http://localhost:3000/"


class SignatureStatus(enum.StrEnum):
    INTERNAL = "internal"
    VALID = "valid"
    INVALID = "invalid"
    MODIFIED = "modified"
    UNSIGNED = "unsigned"


class SignatureType(enum.StrEnum):
    GRAFANA = "grafana"
    COMMERCIAL = "commercial"
    COMMUNITY = "community"
    PRIVATE = "private"
    PRIVATE_GLOB = "private-glob"


class ErrorCode(enum.StrEnum):
    """Grafana's plugin error codes, as its frontend and API report them."""

    SIGNATURE_MISSING = "signatureMissing"
    SIGNATURE_INVALID = "signatureInvalid"
    SIGNATURE_MODIFIED = "signatureModified"
    ANGULAR = "angular"
    # Not a loader code: the message id of the error Grafana's installer gives for a plugin
    # version whose grafanaDependency excludes the running Grafana.
    VERSION_NOT_COMPATIBLE = "plugin.versionNotCompatible"


@dataclass(frozen=True)
class SignatureResult:
    """What Grafana would record for a plugin's signature, plus why, for people.

    ``type``, ``org`` and ``org_name`` are set only when the status is valid, exactly as
    Grafana sets them; ``key_id`` is the manifest's keyId whenever it could be read (for an
    invalid signature it is only what the manifest claims).
    """

    status: SignatureStatus
    type: SignatureType | None = None
    org: str | None = None
    org_name: str | None = None
    key_id: str | None = None
    reason: str = ""
    # Paths that made the plugin "modified": changed, missing or not listed.
    changed_files: tuple[str, ...] = ()
    missing_files: tuple[str, ...] = ()
    unlisted_files: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "type": None if self.type is None else str(self.type),
            "org": self.org,
            "orgName": self.org_name,
            "keyId": self.key_id,
            "reason": self.reason,
            "changedFiles": list(self.changed_files),
            "missingFiles": list(self.missing_files),
            "unlistedFiles": list(self.unlisted_files),
        }


@dataclass(frozen=True)
class VerifyConfig:
    """How to verify: which keys are trusted and which URL Grafana (our gateway) serves at."""

    trusted_keys: TrustedKeys = field(default_factory=TrustedKeys.with_grafana_key)
    app_url: str = GRAFANA_DEFAULT_APP_URL

    def __post_init__(self) -> None:
        # Grafana's AppURL always ends in "/", and glob root URLs are matched against it raw.
        if not self.app_url.endswith("/"):
            object.__setattr__(self, "app_url", self.app_url + "/")
