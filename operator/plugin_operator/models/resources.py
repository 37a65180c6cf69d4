"""Typed views of the Plugin and DataSourceInstance custom resources.

Handlers parse an object's body into these once and pass them on; nothing past the handler
reads raw dictionaries. The apiserver's CRD validation already refuses most bad input, so
parsing errors here mean an object written before a schema change or by a client that
skipped validation: they name the field so the status message can say what to fix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "plugin-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLUGIN_PLURAL = "plugins"
DATASOURCE_PLURAL = "datasourceinstances"

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """A custom resource's spec cannot be used; ``field`` is its path, e.g. spec.source."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Mode(enum.StrEnum):
    POD = "Pod"
    SIDECAR = "Sidecar"


class SignaturePolicy(enum.StrEnum):
    REQUIRE_VALID = "RequireValid"
    ALLOW_UNSIGNED = "AllowUnsigned"


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class UrlSource:
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class ConfigMapSource:
    name: str
    key: str
    sha256: str | None = None


@dataclass(frozen=True)
class ImageSource:
    reference: str
    path: str = "/plugin"
    pull_policy: str = "IfNotPresent"


LATEST = "latest"


@dataclass(frozen=True)
class CatalogSource:
    """A version from a plugin catalog that speaks grafana.com's API (``url``: its base,
    e.g. a company mirror; None: the operator's). ``version`` may be ``latest``."""

    version: str
    url: str | None = None
    sha256: str | None = None

    @property
    def latest(self) -> bool:
        return self.version == LATEST


PluginSource = UrlSource | ConfigMapSource | ImageSource | CatalogSource


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    name: str
    api_version: str = "apps/v1"


@dataclass(frozen=True)
class PluginSpec:
    plugin_id: str
    version: str  # "" for a catalog's latest until resolved (status.artifact.catalogVersion)
    source: PluginSource
    signature_policy: SignaturePolicy = SignaturePolicy.REQUIRE_VALID
    mode: Mode = Mode.POD
    replicas: int = 1
    sidecar_target: WorkloadRef | None = None
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    env: tuple[tuple[str, str], ...] = ()
    config: Mapping[str, str] = field(default_factory=dict)
    app_json_data: Mapping[str, Any] = field(default_factory=dict)
    app_secure_json_data_from: Mapping[str, SecretKeyRef] = field(default_factory=dict)

    def plugin_env(self) -> dict[str, str]:
        """spec.config as Grafana passes [plugin.<id>] settings: GF_PLUGIN_<KEY>."""
        return {f"GF_PLUGIN_{key.upper()}": value for key, value in self.config.items()}


@dataclass(frozen=True)
class HealthCheckSpec:
    enabled: bool = True
    interval_seconds: float = 60.0


@dataclass(frozen=True)
class DataSourceSpec:
    plugin_name: str
    uid: str
    name: str
    url: str = ""
    user: str = ""
    database: str = ""
    basic_auth: bool = False
    basic_auth_user: str = ""
    json_data: Mapping[str, Any] = field(default_factory=dict)
    secure_json_data_from: Mapping[str, SecretKeyRef] = field(default_factory=dict)
    health_check: HealthCheckSpec = HealthCheckSpec()

    def secret_names(self) -> frozenset[str]:
        return frozenset(ref.name for ref in self.secure_json_data_from.values())


def parse_duration(text: str, where: str) -> float:
    """Seconds in a Kubernetes-style duration such as ``90s``, ``5m`` or ``1h30m``."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SpecError(where, f"{text!r} is not a duration such as 30s, 5m or 1h")
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _get(data: Mapping[str, Any], key: str, where: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"{where}.{key}", f"must be {kind.__name__}, not {value!r}")
    return value


def _required_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value: str = _get(data, key, where, str, "")
    if not value:
        raise SpecError(f"{where}.{key}", "is required")
    return value


def _secret_refs(data: Mapping[str, Any], where: str) -> dict[str, SecretKeyRef]:
    refs = {}
    for secure_key, entry in data.items():
        ref = _get(entry if isinstance(entry, Mapping) else {}, "secretKeyRef",
                   f"{where}.{secure_key}", Mapping, {})
        refs[secure_key] = SecretKeyRef(
            name=_required_str(ref, "name", f"{where}.{secure_key}.secretKeyRef"),
            key=_required_str(ref, "key", f"{where}.{secure_key}.secretKeyRef"))
    return refs


def _parse_source(source: Mapping[str, Any], version: str) -> PluginSource:
    where = "spec.source"
    # An empty catalog mapping is a choice (spec.version names the version), not an absence.
    kinds = [k for k in ("url", "configMapRef", "image", "catalog")
             if source.get(k) or (k == "catalog" and isinstance(source.get(k), Mapping))]
    if len(kinds) != 1:
        raise SpecError(where, "must set exactly one of url, configMapRef, image or catalog")
    sha256: str | None = _get(source, "sha256", where, str)
    if sha256 is not None and not re.fullmatch(r"[a-f0-9]{64}", sha256):
        raise SpecError(f"{where}.sha256", "must be 64 lowercase hexadecimal digits")
    if kinds == ["catalog"]:
        return _parse_catalog(_get(source, "catalog", where, Mapping), version, sha256)
    if kinds == ["url"]:
        return UrlSource(url=_required_str(source, "url", where), sha256=sha256)
    if kinds == ["configMapRef"]:
        ref = _get(source, "configMapRef", where, Mapping)
        return ConfigMapSource(name=_required_str(ref, "name", f"{where}.configMapRef"),
                               key=_required_str(ref, "key", f"{where}.configMapRef"),
                               sha256=sha256)
    image = _get(source, "image", where, Mapping)
    return ImageSource(reference=_required_str(image, "reference", f"{where}.image"),
                       path=_get(image, "path", f"{where}.image", str, "/plugin"),
                       pull_policy=_get(image, "pullPolicy", f"{where}.image", str,
                                        "IfNotPresent"))


def _parse_catalog(catalog: Mapping[str, Any], version: str,
                   sha256: str | None) -> CatalogSource:
    where = "spec.source.catalog"
    wanted: str = _get(catalog, "version", where, str, "") or version
    if not wanted:
        raise SpecError(f"{where}.version", "is required when spec.version is not set "
                                            "(a version such as 1.2.3, or latest)")
    if version and wanted.lstrip("v") != version.lstrip("v"):
        raise SpecError(f"{where}.version", f"{wanted!r} contradicts spec.version "
                                            f"{version!r}; set only one of them")
    url: str | None = _get(catalog, "url", where, str) or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise SpecError(f"{where}.url", "must be an http:// or https:// URL")
    return CatalogSource(version=wanted, url=url.rstrip("/") if url else None, sha256=sha256)


def _enum(enum_type: type[enum.StrEnum], value: str, where: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise SpecError(where, f"{value!r} is not one of {allowed}") from None


def parse_plugin_spec(spec: Mapping[str, Any]) -> PluginSpec:
    """Parse a Plugin's ``spec`` (defaults as the CRD declares them)."""
    mode = _enum(Mode, _get(spec, "mode", "spec", str, "Pod"), "spec.mode")
    sidecar = _get(spec, "sidecar", "spec", Mapping, {})
    target = None
    if sidecar.get("targetRef"):
        ref = _get(sidecar, "targetRef", "spec.sidecar", Mapping)
        target = WorkloadRef(kind=_required_str(ref, "kind", "spec.sidecar.targetRef"),
                             name=_required_str(ref, "name", "spec.sidecar.targetRef"),
                             api_version=_get(ref, "apiVersion", "spec.sidecar.targetRef", str,
                                              "apps/v1"))
    if target is not None and mode is not Mode.SIDECAR:
        raise SpecError("spec.sidecar", "may only be set when spec.mode is Sidecar")
    replicas: int = _get(spec, "replicas", "spec", int, 1)
    if not 0 <= replicas <= 64:
        raise SpecError("spec.replicas", f"must be between 0 and 64, not {replicas}")
    resources = {
        kind: {name: str(qty) for name, qty in _get(
            _get(spec, "resources", "spec", Mapping, {}), kind, "spec.resources",
            Mapping, {}).items()}
        for kind in ("requests", "limits")
    }
    env = tuple((_required_str(item, "name", "spec.env[]"), str(item.get("value", "")))
                for item in _get(spec, "env", "spec", list, []))
    config = {str(k): str(v) for k, v in _get(spec, "config", "spec", Mapping, {}).items()}
    app = _get(spec, "app", "spec", Mapping, {})
    policy = _get(_get(spec, "signature", "spec", Mapping, {}), "policy", "spec.signature", str,
                  "RequireValid")
    version: str = _get(spec, "version", "spec", str, "")
    source = _parse_source(_get(spec, "source", "spec", Mapping, {}), version)
    if not version and not isinstance(source, CatalogSource):
        raise SpecError("spec.version", "is required")
    return PluginSpec(
        plugin_id=_required_str(spec, "pluginId", "spec"),
        # Empty only for a catalog's latest: the version it resolves to is in status.
        version=version or (source.version if isinstance(source, CatalogSource)
                            and not source.latest else ""),
        source=source,
        signature_policy=_enum(SignaturePolicy, policy, "spec.signature.policy"),
        mode=mode,
        replicas=replicas,
        sidecar_target=target,
        resources={k: v for k, v in resources.items() if v},
        env=env,
        config=config,
        app_json_data=dict(_get(app, "jsonData", "spec.app", Mapping, {})),
        app_secure_json_data_from=_secret_refs(
            _get(app, "secureJsonDataFrom", "spec.app", Mapping, {}),
            "spec.app.secureJsonDataFrom"),
    )


def parse_datasource_spec(spec: Mapping[str, Any], object_name: str) -> DataSourceSpec:
    """Parse a DataSourceInstance's ``spec``; ``name`` defaults to the object's name."""
    plugin_ref = _get(spec, "pluginRef", "spec", Mapping, {})
    health = _get(spec, "healthCheck", "spec", Mapping, {})
    return DataSourceSpec(
        plugin_name=_required_str(plugin_ref, "name", "spec.pluginRef"),
        uid=_required_str(spec, "uid", "spec"),
        name=_get(spec, "name", "spec", str, "") or object_name,
        url=_get(spec, "url", "spec", str, ""),
        user=_get(spec, "user", "spec", str, ""),
        database=_get(spec, "database", "spec", str, ""),
        basic_auth=_get(spec, "basicAuth", "spec", bool, False),
        basic_auth_user=_get(spec, "basicAuthUser", "spec", str, ""),
        json_data=dict(_get(spec, "jsonData", "spec", Mapping, {})),
        secure_json_data_from=_secret_refs(
            _get(spec, "secureJsonDataFrom", "spec", Mapping, {}), "spec.secureJsonDataFrom"),
        health_check=HealthCheckSpec(
            enabled=_get(health, "enabled", "spec.healthCheck", bool, True),
            interval_seconds=parse_duration(
                _get(health, "interval", "spec.healthCheck", str, "60s"),
                "spec.healthCheck.interval")),
    )
