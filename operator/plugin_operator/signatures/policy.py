"""May the plugin load? Grafana's policy on top of a signature result.

Valid and internal plugins load; unsigned plugins only when their id is allowed (or in
development mode); invalid and modified plugins never. Angular plugins are refused after
the signature check, as Grafana's validation runs them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plugin_operator.package.plugin_json import PluginJson
from plugin_operator.signatures.angular import detect_angular_in
from plugin_operator.signatures.model import (
    ErrorCode,
    SignatureResult,
    SignatureStatus,
    VerifyConfig,
)
from plugin_operator.signatures.verify import PluginVerification, verify_bundle


@dataclass(frozen=True)
class LoadPolicy:
    """The operator's equivalent of Grafana's allow_loading_unsigned_plugins / app_mode."""

    allow_unsigned: frozenset[str] = field(default_factory=frozenset)
    development: bool = False

    def allows_unsigned(self, plugin_id: str) -> bool:
        return self.development or plugin_id in self.allow_unsigned


@dataclass(frozen=True)
class Decision:
    allowed: bool
    error_code: ErrorCode | None = None
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed,
                "errorCode": None if self.error_code is None else str(self.error_code),
                "message": self.message}


def decide(result: SignatureResult, plugin: PluginJson, policy: LoadPolicy,
           angular_marker: str | None = None) -> Decision:
    """Whether the plugin may load and, if not, Grafana's error code and what to do."""
    pid = plugin.id
    status = result.status
    if status is SignatureStatus.UNSIGNED and not policy.allows_unsigned(pid):
        return Decision(False, ErrorCode.SIGNATURE_MISSING,
                        f"plugin {pid!r} has no signature (no MANIFEST.txt). Sign it, or allow "
                        f"this unsigned plugin explicitly (--allow-unsigned {pid}; operator: "
                        "allowUnsignedPlugins).")
    if status is SignatureStatus.INVALID:
        return Decision(False, ErrorCode.SIGNATURE_INVALID,
                        f"plugin {pid!r} has an invalid signature: {result.reason}. Install a "
                        "correctly signed package; an invalid signature cannot be allowed.")
    if status is SignatureStatus.MODIFIED:
        return Decision(False, ErrorCode.SIGNATURE_MODIFIED,
                        f"plugin {pid!r} does not match its signature: {result.reason}. "
                        "Reinstall the unmodified package or re-sign it; a modified plugin "
                        "cannot be allowed.")
    if angular_marker is not None:
        return Decision(False, ErrorCode.ANGULAR,
                        f"plugin {pid!r} uses Angular (module.js contains {angular_marker!r}), "
                        "which Grafana no longer supports. Use a version of the plugin built "
                        "with React.")
    if status is SignatureStatus.UNSIGNED:
        return Decision(True, message=f"plugin {pid!r} is unsigned and allowed by "
                                      "configuration; this is not recommended")
    return Decision(True, message=f"plugin {pid!r} signature is {status}")


@dataclass(frozen=True)
class PluginVerdict:
    verification: PluginVerification
    angular_marker: str | None
    decision: Decision


def evaluate(root: Path, config: VerifyConfig | None = None,
             policy: LoadPolicy | None = None) -> list[PluginVerdict]:
    """Verify a plugin package (with nested plugins) and decide for each plugin."""
    policy = policy or LoadPolicy()
    verdicts = []
    for item in verify_bundle(root, config):
        marker = detect_angular_in(item.directory)
        verdicts.append(PluginVerdict(item, marker,
                                      decide(item.signature, item.plugin, policy, marker)))
    return verdicts


def package_allowed(verdicts: list[PluginVerdict]) -> bool:
    """A package loads only when every plugin in it may load."""
    return bool(verdicts) and all(v.decision.allowed for v in verdicts)
