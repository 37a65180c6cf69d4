"""The operator's settings: a YAML file, then environment variables on top.

    namespaces: [plugins]              # watched namespaces; empty: the whole cluster
    image: plugin-operator:0.1.0       # the image backend pods run (ours)
    imagePullPolicy: IfNotPresent
    appUrl: http://localhost:3000/     # matched against private signatures' root URLs
    allowUnsignedPlugins: [my-dev-datasource]
    trustedKeys: [/etc/plugin-operator/keys/team.asc]
    artifacts:
      directory: /var/cache/plugin-operator
      port: 8081
      url: http://plugin-operator.plugin-operator.svc:8081   # how pods reach the cache
      mirrors: [http://plugin-operator-gateway.plugin-operator.svc:8001]  # copies elsewhere
      maxBytes: 1073741824             # archives beyond this that no Plugin uses are evicted
    metricsPort: 8080
    healthPort: 8082
    backoff: {initial: 1s, max: 5m, resetAfter: 10m}
    gateway: {namespace: plugin-operator, deployment: plugin-operator-gateway}
    healthCheckTimeout: 10s
    packageLimits: {maxTotalBytes: 536870912, maxFiles: 10000, maxRatio: 100}
    tracing: {otlpAddress: tempo.monitoring.svc:4317, samplerType: const, samplerParam: 1}
    catalog: {url: https://grafana.com/api/plugins}   # or file:///bundle/plugins (offline)

Every key has an environment variable, PLUGIN_OPERATOR_<KEY IN UPPER SNAKE CASE>
(lists comma-separated, nested keys joined by '_': PLUGIN_OPERATOR_BACKOFF_MAX=2m).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plugin_operator.controller import tracing
from plugin_operator.controller.tracing import TracingSettings
from plugin_operator.models.resources import SpecError, parse_duration
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.package.catalog import DEFAULT_CATALOG_URL

ENV_PREFIX = "PLUGIN_OPERATOR_"
DEFAULT_CONFIG_PATH = Path("/etc/plugin-operator/config.yaml")


class ConfigError(ValueError):
    """The operator's configuration is unusable; the message says which setting and why."""


@dataclass(frozen=True)
class BackoffSettings:
    initial: float = 1.0
    max: float = 300.0
    reset_after: float = 600.0


@dataclass(frozen=True)
class PackageLimitSettings:
    max_total_bytes: int = 512 * 1024 * 1024
    max_files: int = 10_000
    max_ratio: int = 100


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    image: str = "plugin-operator:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    app_url: str = "http://localhost:3000/"
    grafana_version: str = DEFAULT_GRAFANA_VERSION  # GF_VERSION; grafanaDependency checks
    allow_unsigned_plugins: tuple[str, ...] = ()
    trusted_keys: tuple[Path, ...] = ()
    artifacts_directory: Path = Path("/var/cache/plugin-operator")
    artifacts_port: int = 8081
    artifacts_url: str = "http://plugin-operator.plugin-operator.svc:8081"
    # Other caches serving the same /artifacts/<sha256> (the gateways' mirrors): backend pods
    # fall back to them, and a restarted operator refills its own cache from them.
    artifacts_mirrors: tuple[str, ...] = ()
    artifacts_max_bytes: int = 1024 * 1024 * 1024
    metrics_port: int = 8080
    health_port: int = 8082
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    gateway_namespace: str = "plugin-operator"
    gateway_deployment: str = "plugin-operator-gateway"
    health_check_timeout: float = 10.0
    package_limits: PackageLimitSettings = field(default_factory=PackageLimitSettings)
    # Where plugin backends send their own spans (GF_INSTANCE_OTLP_*; controller/tracing.py).
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Where spec.source.catalog resolves versions when the Plugin names no catalog: a
    # grafana.com-style plugin API, or a bundle of `plugin-operator mirror` on disk (file://).
    catalog_url: str = DEFAULT_CATALOG_URL


# setting path -> (kind, attribute). Kinds convert both YAML values and env strings.
_SETTINGS: dict[str, tuple[str, str]] = {
    "namespaces": ("list", "namespaces"),
    "image": ("str", "image"),
    "imagePullPolicy": ("pull", "image_pull_policy"),
    "appUrl": ("url", "app_url"),
    "grafanaVersion": ("str", "grafana_version"),
    "allowUnsignedPlugins": ("list", "allow_unsigned_plugins"),
    "trustedKeys": ("paths", "trusted_keys"),
    "artifacts.directory": ("path", "artifacts_directory"),
    "artifacts.port": ("port", "artifacts_port"),
    "artifacts.url": ("url", "artifacts_url"),
    "artifacts.mirrors": ("urls", "artifacts_mirrors"),
    "artifacts.maxBytes": ("int", "artifacts_max_bytes"),
    "metricsPort": ("port", "metrics_port"),
    "healthPort": ("port", "health_port"),
    "backoff.initial": ("duration", "backoff.initial"),
    "backoff.max": ("duration", "backoff.max"),
    "backoff.resetAfter": ("duration", "backoff.reset_after"),
    "gateway.namespace": ("str", "gateway_namespace"),
    "gateway.deployment": ("str", "gateway_deployment"),
    "healthCheckTimeout": ("duration", "health_check_timeout"),
    "packageLimits.maxTotalBytes": ("int", "package_limits.max_total_bytes"),
    "packageLimits.maxFiles": ("int", "package_limits.max_files"),
    "packageLimits.maxRatio": ("int", "package_limits.max_ratio"),
    "tracing.otlpAddress": ("otlpAddress", "tracing.otlp_address"),
    "tracing.propagation": ("propagation", "tracing.propagation"),
    "tracing.samplerType": ("samplerType", "tracing.sampler_type"),
    "tracing.samplerParam": ("samplerParam", "tracing.sampler_param"),
    "tracing.samplerRemoteUrl": ("samplerUrl", "tracing.sampler_remote_url"),
    "catalog.url": ("catalog", "catalog_url"),
}


def _env_name(setting: str) -> str:
    words = []
    for part in setting.split("."):
        snake = "".join(f"_{c}" if c.isupper() else c for c in part)
        words.append(snake.upper())
    return ENV_PREFIX + "_".join(words)


def _convert(kind: str, value: Any, setting: str, origin: str) -> Any:
    where = f"{setting} (from {origin})"
    # Environment variables can only spell lists as comma-separated text; a file must use
    # a YAML list, so that a forgotten dash is an error rather than a one-item list.
    from_env = origin.startswith(ENV_PREFIX) and isinstance(value, str)
    if kind in tracing.KINDS:  # these may be empty, unlike the strings below
        try:
            return tracing.convert(kind, value)
        except ValueError as exc:
            raise ConfigError(f"{where} {exc}") from None
    if kind in ("list", "paths", "urls"):
        items = [v.strip() for v in value.split(",") if v.strip()] if from_env else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        if kind == "urls" and not all(i.startswith(("http://", "https://")) for i in items):
            raise ConfigError(f"{where} must be a list of http:// or https:// URLs, not "
                              f"{value!r}")
        return tuple(Path(i) for i in items) if kind == "paths" else tuple(items)
    if kind in ("int", "port"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a whole number, not {value!r}") from None
        if kind == "port" and not 1 <= number <= 65535:
            raise ConfigError(f"{where} must be a port between 1 and 65535, not {number}")
        if number <= 0:
            raise ConfigError(f"{where} must be positive, not {number}")
        return number
    if kind == "duration":
        try:
            return parse_duration(str(value), where)
        except SpecError as exc:
            raise ConfigError(f"{where} must be a duration such as 500ms, 30s or 5m, "
                              f"not {value!r}") from exc
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    if kind == "pull" and value not in ("Always", "IfNotPresent", "Never"):
        raise ConfigError(f"{where} must be Always, IfNotPresent or Never, not {value!r}")
    if kind == "url" and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where} must be an http:// or https:// URL, not {value!r}")
    if kind == "catalog":
        if not value.startswith(("http://", "https://", "file:///")):
            raise ConfigError(f"{where} must be an http://, https:// or file:/// URL (a "
                              f"bundle's plugins folder), not {value!r}")
        return value.rstrip("/")
    return Path(value) if kind == "path" else value


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not any(s == path for s in _SETTINGS):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None
                ) -> OperatorConfig:
    """Read the file (when given or present at the default path) and the environment."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    file_path = path or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    if file_path is not None:
        try:
            data = yaml.safe_load(file_path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration file {file_path}: "
                              f"{exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file_path} must hold a mapping of settings")
        for setting, value in _flatten(data).items():
            if setting not in _SETTINGS:
                known = ", ".join(sorted(_SETTINGS))
                raise ConfigError(f"unknown setting {setting!r} in {file_path}; "
                                  f"known settings: {known}")
            values[setting], origins[setting] = value, str(file_path)
    for setting in _SETTINGS:
        name = _env_name(setting)
        if name in environ:
            values[setting], origins[setting] = environ[name], name
    converted = {s: _convert(_SETTINGS[s][0], v, s, origins[s]) for s, v in values.items()}
    return _build(converted)


def _build(settings: Mapping[str, Any]) -> OperatorConfig:
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"backoff": {}, "package_limits": {}, "tracing": {}}
    for setting, value in settings.items():
        attribute = _SETTINGS[setting][1]
        group, _, name = attribute.partition(".")
        if name:
            nested[group][name] = value
        else:
            top[attribute] = value
    backoff = BackoffSettings(**nested["backoff"])
    if backoff.initial > backoff.max:
        raise ConfigError(f"backoff.initial ({backoff.initial:g}s) must not exceed backoff.max "
                          f"({backoff.max:g}s)")
    traces = TracingSettings(**nested["tracing"])
    try:
        tracing.check(traces)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return OperatorConfig(**top, backoff=backoff,
                          package_limits=PackageLimitSettings(**nested["package_limits"]),
                          tracing=traces)
