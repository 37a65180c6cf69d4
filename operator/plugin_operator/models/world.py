"""Typed views of the cluster objects the gateway routes by, parsed from their JSON.

The operator writes these objects and the gateway reads them (the operator reads the pods
too, to tell the gateways' artifact copies apart); like naming.py this is the contract
between the two, so it lives with the models, not in either component. Parsing is strict
about what routing needs and lenient about the rest, so one odd object never stops the
gateway.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from plugin_operator.models import naming
from plugin_operator.models.resources import (
    DataSourceSpec,
    ObjectRef,
    PluginSpec,
    SpecError,
    parse_datasource_spec,
    parse_plugin_spec,
)
from plugin_operator.models.status import (
    ArtifactStatus,
    DataSourceStatus,
    Phase,
    PluginInfo,
    PluginStatus,
    SignatureStatus,
)


class ObjectError(ValueError):
    """An object the gateway cannot use; the message says which one and why."""


def object_key(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass(frozen=True)
class PluginRecord:
    key: ObjectRef
    spec: PluginSpec
    status: PluginStatus
    created: str = ""  # metadata.creationTimestamp (RFC 3339 in UTC: sorts as text)

    @property
    def phase(self) -> Phase | None:
        return self.status.phase

    @property
    def info(self) -> PluginInfo:
        return self.status.plugin or PluginInfo()

    @property
    def signature(self) -> SignatureStatus:
        """Why a Rejected plugin was refused is its ``error_code`` when it is a signature
        problem, and else the ``[<code>]`` that starts ``message``."""
        return self.status.signature or SignatureStatus()

    @property
    def artifact(self) -> ArtifactStatus:
        return self.status.artifact or ArtifactStatus()

    @property
    def message(self) -> str:
        return self.status.message or ""


@dataclass(frozen=True)
class DataSourceRecord:
    key: ObjectRef
    spec: DataSourceSpec
    settings_version: int
    plugin_id: str


@dataclass(frozen=True)
class PodRecord:
    key: ObjectRef
    plugin_name: str
    ip: str
    ready: bool


@dataclass(frozen=True)
class GatewayPod:
    """The gateway's own pod: which sidecars it carries and which are ready."""

    sidecar_ports: Mapping[str, int] = field(default_factory=dict)
    ready_containers: frozenset[str] = frozenset()


def parse_plugin(obj: Mapping[str, Any]) -> PluginRecord:
    key = object_key(obj)
    try:
        spec = parse_plugin_spec(obj.get("spec") or {})
    except SpecError as exc:
        raise ObjectError(f"Plugin {key}: {exc}") from exc
    created = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    status = PluginStatus.parse(obj.get("status"))
    if not spec.version and status.artifact and status.artifact.catalog_version:
        # A catalog's latest: the version it resolved to is what runs.
        spec = replace(spec, version=status.artifact.catalog_version)
    return PluginRecord(key, spec, status, created)


def parse_datasource(obj: Mapping[str, Any]) -> DataSourceRecord:
    key = object_key(obj)
    try:
        spec = parse_datasource_spec(obj.get("spec") or {}, key.name)
    except SpecError as exc:
        raise ObjectError(f"DataSourceInstance {key}: {exc}") from exc
    status = DataSourceStatus.parse(obj.get("status"))
    return DataSourceRecord(key, spec, status.settings_version or 0, status.plugin_id or "")


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in status.get("conditions") or ())


def parse_backend_pod(obj: Mapping[str, Any]) -> PodRecord:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    terminating = bool(meta.get("deletionTimestamp"))
    ready = (not terminating and status.get("phase") == "Running"
             and _condition_true(status, "Ready") and bool(status.get("podIP")))
    return PodRecord(object_key(obj), str((meta.get("labels") or {}).get(naming.LABEL_PLUGIN, "")),
                     str(status.get("podIP") or ""), ready)


def parse_gateway_pod(obj: Mapping[str, Any]) -> GatewayPod:
    meta = obj.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(naming.ANNOTATION_SIDECARS)
    ports: dict[str, int] = {}
    if raw:
        try:
            decoded = json.loads(raw)
            ports = {str(name): int(port) for name, port in decoded.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ObjectError(f"annotation {naming.ANNOTATION_SIDECARS} on pod "
                              f"{object_key(obj)} is not a JSON object of plugin name to "
                              f"port: {exc}") from exc
    ready = frozenset(str(c.get("name")) for c in
                      (obj.get("status") or {}).get("containerStatuses") or ()
                      if c.get("ready"))
    return GatewayPod(ports, ready)


def parse_secret(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's data decoded (stringData wins, as the apiserver would merge it)."""
    values: dict[str, str] = {}
    for name, encoded in (obj.get("data") or {}).items():
        try:
            values[str(name)] = base64.b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            # Secure settings are strings in Grafana; binary values cannot be sent.
            continue
    values.update({str(k): str(v) for k, v in (obj.get("stringData") or {}).items()})
    return values
