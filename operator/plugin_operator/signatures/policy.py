"""May the plugin load? Grafana's policy on top of a signature result.

Valid and internal plugins load; unsigned plugins only when their id is allowed (or in
development mode); invalid and modified plugins never. Angular plugins are refused after
the signature check, as Grafana's validation runs them in that order. A grafanaDependency
that excludes the configured Grafana version is a warning, or a refusal when the policy
says so: Grafana's loader ignores it, its installer refuses such a version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plugin_operator.package.discovery import find_plugins_in
from plugin_operator.package.grafana_dependency import (
    GrafanaCompatibility,
    check_grafana_dependency,
)
from plugin_operator.package.plugin_json import PluginJson
from plugin_operator.signatures.angular import detect_angular_in
from plugin_operator.signatures.model import (
    ErrorCode,
    SignatureResult,
    SignatureStatus,
    VerifyConfig,
)
from plugin_operator.signatures.verify import PluginVerification, verify_bundle, verify_found


@dataclass(frozen=True)
class LoadPolicy:
    """The operator's equivalent of Grafana's allow_loading_unsigned_plugins / app_mode.

    ``grafana_version`` None leaves grafanaDependency unchecked, as Grafana's loader does.
    """

    allow_unsigned: frozenset[str] = field(default_factory=frozenset)
    development: bool = False
    grafana_version: str | None = None
    refuse_incompatible_grafana: bool = False

    def allows_unsigned(self, plugin_id: str) -> bool:
        return self.development or plugin_id in self.allow_unsigned


@dataclass(frozen=True)
class Decision:
    allowed: bool
    error_code: ErrorCode | None = None
    message: str = ""
    # What does not stop the plugin but should be fixed, e.g. a Grafana version it was not
    # made for.
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed,
                "errorCode": None if self.error_code is None else str(self.error_code),
                "message": self.message, "warnings": list(self.warnings)}


def decide(result: SignatureResult, plugin: PluginJson, policy: LoadPolicy,
           angular_marker: str | None = None,
           compatibility: GrafanaCompatibility | None = None) -> Decision:
    """Whether the plugin may load and, if not, Grafana's error code and what to do."""
    pid = plugin.id
    status = result.status
    incompatible = compatibility is not None and not compatibility.compatible
    warnings = (compatibility.message,) if compatibility is not None and incompatible else ()
    if status is SignatureStatus.UNSIGNED and not policy.allows_unsigned(pid):
        return Decision(False, ErrorCode.SIGNATURE_MISSING,
                        f"plugin {pid!r} has no signature (no MANIFEST.txt). Sign it, or allow "
                        f"this unsigned plugin explicitly (--allow-unsigned {pid}; operator: "
                        "allowUnsignedPlugins).", warnings)
    if status is SignatureStatus.INVALID:
        return Decision(False, ErrorCode.SIGNATURE_INVALID,
                        f"plugin {pid!r} has an invalid signature: {result.reason}. Install a "
                        "correctly signed package; an invalid signature cannot be allowed.",
                        warnings)
    if status is SignatureStatus.MODIFIED:
        return Decision(False, ErrorCode.SIGNATURE_MODIFIED,
                        f"plugin {pid!r} does not match its signature: {result.reason}. "
                        "Reinstall the unmodified package or re-sign it; a modified plugin "
                        "cannot be allowed.", warnings)
    if angular_marker is not None:
        return Decision(False, ErrorCode.ANGULAR,
                        f"plugin {pid!r} uses Angular (module.js contains {angular_marker!r}), "
                        "which Grafana no longer supports. Use a version of the plugin built "
                        "with React.", warnings)
    if compatibility is not None and incompatible and policy.refuse_incompatible_grafana:
        return Decision(False, ErrorCode.VERSION_NOT_COMPATIBLE,
                        f"{compatibility.message}. Install a version of the plugin made for "
                        f"Grafana {compatibility.grafana_version}, or check against the "
                        "Grafana you run (--grafana-version).")
    if status is SignatureStatus.UNSIGNED:
        return Decision(True, message=f"plugin {pid!r} is unsigned and allowed by "
                                      "configuration; this is not recommended",
                        warnings=warnings)
    return Decision(True, message=f"plugin {pid!r} signature is {status}", warnings=warnings)


@dataclass(frozen=True)
class PluginVerdict:
    verification: PluginVerification
    angular_marker: str | None
    decision: Decision
    compatibility: GrafanaCompatibility | None = None


def evaluate(root: Path, config: VerifyConfig | None = None,
             policy: LoadPolicy | None = None) -> list[PluginVerdict]:
    """Verify a plugin package (with nested plugins) and decide for each plugin."""
    return _judge(verify_bundle(root, config), policy or LoadPolicy())


def evaluate_folder(folder: Path, config: VerifyConfig | None = None,
                    policy: LoadPolicy | None = None) -> list[PluginVerdict]:
    """Like :func:`evaluate` for every plugin Grafana would find given ``folder``: a plugin
    folder, or a folder of plugins such as Grafana's plugins folder, links followed."""
    return _judge(verify_found(find_plugins_in(folder), config), policy or LoadPolicy())


def _judge(items: list[PluginVerification], policy: LoadPolicy) -> list[PluginVerdict]:
    verdicts = []
    for item in items:
        marker = detect_angular_in(item.directory)
        compatibility = None if policy.grafana_version is None else \
            check_grafana_dependency(item.plugin, policy.grafana_version)
        verdicts.append(PluginVerdict(item, marker, decide(item.signature, item.plugin, policy,
                                                           marker, compatibility),
                                      compatibility))
    return verdicts


def package_allowed(verdicts: list[PluginVerdict]) -> bool:
    """A package loads only when every plugin in it may load."""
    return bool(verdicts) and all(v.decision.allowed for v in verdicts)
