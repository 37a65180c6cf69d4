"""The status of our three resources as typed values, each with one parser and one writer.

The operator computes a status from the world on every pass and the gateway reads it back;
both go through these types, so a field is spelled in one place. ``parse`` is lenient (an
odd or missing field reads as absent: one broken status never stops a pass) and
``to_json`` gives the object the apiserver stores, without the absent fields. ``patch``
turns the stored object into the computed one as a JSON merge patch (RFC 7386) that also
names every key a pass no longer sets, at any depth, with null: without that, a key such
as ``artifact.image`` would outlive the source that set it and the stored status would
never compare equal to the computed one, so every pass would write it again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self


class Phase(enum.StrEnum):
    PENDING = "Pending"
    VERIFYING = "Verifying"
    REJECTED = "Rejected"
    STARTING = "Starting"
    RUNNING = "Running"
    DEGRADED = "Degraded"

    @property
    def verified(self) -> bool:
        """The package passed verification, so its archive may be installed and run."""
        return self in (Phase.STARTING, Phase.RUNNING, Phase.DEGRADED)


_PHASES = frozenset(str(phase) for phase in Phase)


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else str(value)


def _integer(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else None


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Condition:
    """A standard Kubernetes condition."""

    type: str
    status: str  # True, False or Unknown
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None

    @property
    def true(self) -> bool:
        return self.status == "True"

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("type") or ""), str(raw.get("status") or "Unknown"),
                   str(raw.get("reason") or ""), str(raw.get("message") or ""),
                   str(raw.get("lastTransitionTime") or ""),
                   _integer(raw, "observedGeneration"))

    def to_json(self) -> dict[str, Any]:
        return _compact({"type": self.type, "status": self.status, "reason": self.reason,
                         "message": self.message,
                         "lastTransitionTime": self.last_transition_time or None,
                         "observedGeneration": self.observed_generation})


def transition(previous: Sequence[Condition], type_: str, status: bool | None, reason: str,
               message: str, generation: int, now: datetime) -> Condition:
    """Condition ``type_`` as a pass sees it; its transition time moves only when its
    status does."""
    value = "Unknown" if status is None else ("True" if status else "False")
    old = find_condition(previous, type_)
    since = old.last_transition_time if old is not None and old.status == value and \
        old.last_transition_time else timestamp(now)
    return Condition(type_, value, reason, message, since, generation)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def with_condition(conditions: Sequence[Condition], new: Condition) -> tuple[Condition, ...]:
    """``conditions`` with ``new`` in place of the one of its type (appended if none)."""
    kept = [c for c in conditions if c.type != new.type]
    return (*kept, new)


def _parse_conditions(raw: Mapping[str, Any]) -> tuple[Condition, ...]:
    items = raw.get("conditions")
    if not isinstance(items, list):
        return ()
    return tuple(Condition.parse(c) for c in items if isinstance(c, Mapping) and c.get("type"))


class _Status:
    """What every status type shares: the stored JSON and the merge patch to reach it."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def patch(self, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The merge patch from the stored status ``current`` to this one; None when the
        two are already equal."""
        return _merge_patch(dict(current or {}), self.to_json()) or None


def _merge_patch(current: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in current if key not in target}
    for key, value in target.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = _merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in current or old != value:
            # A mapping that replaces a non-mapping merges into nothing, so it is sent whole.
            patch[key] = value
    return patch


@dataclass(frozen=True)
class SignatureStatus:
    status: str = ""
    type: str = ""
    org: str = ""
    key_id: str = ""
    error_code: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("status") or ""), str(raw.get("type") or ""),
                   str(raw.get("org") or ""), str(raw.get("keyId") or ""),
                   str(raw.get("errorCode") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "type": self.type, "org": self.org,
                "keyId": self.key_id, "errorCode": self.error_code}


@dataclass(frozen=True)
class PluginInfo:
    """``status.plugin``: what the package's plugin.json says."""

    type: str = ""
    name: str = ""
    backend: bool = False
    executable: str = ""
    streaming: bool = False
    alerting: bool = False
    version: str = ""  # info.version: what runs, whatever the source named (catalog latest)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("type") or ""), str(raw.get("name") or ""),
                   bool(raw.get("backend")), str(raw.get("executable") or ""),
                   bool(raw.get("streaming")), bool(raw.get("alerting")),
                   str(raw.get("version") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "backend": self.backend,
                "executable": self.executable, "streaming": self.streaming,
                "alerting": self.alerting, "version": self.version}


@dataclass(frozen=True)
class ArtifactStatus:
    """``status.artifact``: the verified archive, and the image or catalog version it came
    from if any (a catalog's ``latest`` is resolved once: later passes keep this version)."""

    sha256: str = ""
    size: int = 0
    url: str | None = None
    image: str | None = None
    image_path: str | None = None
    catalog_version: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("sha256") or ""), _integer(raw, "size") or 0,
                   _text(raw, "url"), _text(raw, "image"), _text(raw, "imagePath"),
                   _text(raw, "catalogVersion"))

    def to_json(self) -> dict[str, Any]:
        return _compact({"sha256": self.sha256, "size": self.size, "url": self.url,
                         "image": self.image, "imagePath": self.image_path,
                         "catalogVersion": self.catalog_version})


@dataclass(frozen=True)
class FailureStatus:
    """``status.lastFailure``: the latest backend crash or failed fetch."""

    pod: str
    exit_code: int
    reason: str
    message: str
    time: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("pod") or ""), _integer(raw, "exitCode") or 0,
                   str(raw.get("reason") or ""), str(raw.get("message") or ""),
                   str(raw.get("time") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "exitCode": self.exit_code, "reason": self.reason,
                "message": self.message, "time": self.time}

    def is_newer_than(self, other: FailureStatus | None) -> bool:
        return other is None or self.time > other.time or (
            self.time == other.time and self.pod != other.pod)


@dataclass(frozen=True)
class PluginStatus(_Status):
    phase: Phase | None = None
    message: str | None = None
    observed_generation: int | None = None
    signature: SignatureStatus | None = None
    plugin: PluginInfo | None = None
    artifact: ArtifactStatus | None = None
    service_name: str | None = None
    sidecar_target: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    restarts: int | None = None
    last_failure: FailureStatus | None = None
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Self:
        raw = raw or {}
        phase = raw.get("phase")
        signature, plugin = _mapping(raw, "signature"), _mapping(raw, "plugin")
        artifact, failure = _mapping(raw, "artifact"), _mapping(raw, "lastFailure")
        return cls(
            phase=Phase(phase) if isinstance(phase, str) and phase in _PHASES else None,
            message=_text(raw, "message"),
            observed_generation=_integer(raw, "observedGeneration"),
            signature=None if signature is None else SignatureStatus.parse(signature),
            plugin=None if plugin is None else PluginInfo.parse(plugin),
            artifact=None if artifact is None else ArtifactStatus.parse(artifact),
            service_name=_text(raw, "serviceName"),
            sidecar_target=_text(raw, "sidecarTarget"),
            replicas=_integer(raw, "replicas"), ready_replicas=_integer(raw, "readyReplicas"),
            restarts=_integer(raw, "restarts"),
            last_failure=None if failure is None else FailureStatus.parse(failure),
            conditions=_parse_conditions(raw))

    def to_json(self) -> dict[str, Any]:
        return _compact({
            "phase": None if self.phase is None else str(self.phase),
            "message": self.message, "observedGeneration": self.observed_generation,
            "signature": self.signature and self.signature.to_json(),
            "plugin": self.plugin and self.plugin.to_json(),
            "artifact": self.artifact and self.artifact.to_json(),
            "serviceName": self.service_name, "sidecarTarget": self.sidecar_target,
            "replicas": self.replicas, "readyReplicas": self.ready_replicas,
            "restarts": self.restarts,
            "lastFailure": self.last_failure and self.last_failure.to_json(),
            "conditions": [c.to_json() for c in self.conditions] or None})

    def verified_for(self, generation: int) -> bool:
        """It describes ``generation`` and that generation's package passed verification."""
        return (self.observed_generation == generation and self.phase is not None
                and self.phase.verified and bool(self.artifact and self.artifact.sha256))

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


@dataclass(frozen=True)
class Health:
    """``status.health``: the result of the plugin's last CheckHealth."""

    status: str  # OK, ERROR or UNKNOWN
    message: str = ""
    checked_at: str | None = None
    details: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("status") or "UNKNOWN"), str(raw.get("message") or ""),
                   _text(raw, "checkedAt"), _mapping(raw, "details"))

    def to_json(self) -> dict[str, Any]:
        return _compact({"status": self.status, "message": self.message,
                         "checkedAt": self.checked_at,
                         "details": None if self.details is None else dict(self.details)})


@dataclass(frozen=True)
class DataSourceStatus(_Status):
    observed_generation: int | None = None
    plugin_id: str | None = None
    settings_version: int | None = None
    settings_hash: str | None = None
    health: Health | None = None
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Self:
        raw = raw or {}
        health = _mapping(raw, "health")
        return cls(_integer(raw, "observedGeneration"), _text(raw, "pluginId"),
                   _integer(raw, "settingsVersion"), _text(raw, "settingsHash"),
                   None if health is None else Health.parse(health), _parse_conditions(raw))

    def to_json(self) -> dict[str, Any]:
        return _compact({
            "observedGeneration": self.observed_generation, "pluginId": self.plugin_id,
            "settingsVersion": self.settings_version, "settingsHash": self.settings_hash,
            "health": self.health and self.health.to_json(),
            "conditions": [c.to_json() for c in self.conditions] or None})


@dataclass(frozen=True)
class AttachmentEntry:
    """One entry of a GrafanaAttachment's ``status.plugins``: a listed Plugin and what
    Grafana runs of it (version, digest, mode and address only once it can be attached)."""

    name: str
    plugin_id: str = ""
    attached: bool = False
    current: bool = False
    message: str = ""
    version: str | None = None
    sha256: str | None = None
    mode: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        return cls(str(raw.get("name") or ""), str(raw.get("pluginId") or ""),
                   bool(raw.get("attached")), bool(raw.get("current")),
                   str(raw.get("message") or ""), _text(raw, "version"),
                   _text(raw, "sha256"), _text(raw, "mode"), _text(raw, "address"))

    def to_json(self) -> dict[str, Any]:
        return _compact({"name": self.name, "pluginId": self.plugin_id,
                         "attached": self.attached, "current": self.current,
                         "message": self.message, "version": self.version,
                         "sha256": self.sha256, "mode": self.mode, "address": self.address})


@dataclass(frozen=True)
class AttachmentStatus(_Status):
    observed_generation: int | None = None
    workload: str = ""
    summary: str = ""
    plugins: tuple[AttachmentEntry, ...] = ()
    datasources: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Self:
        raw = raw or {}
        plugins = raw.get("plugins") if isinstance(raw.get("plugins"), list) else []
        datasources = raw.get("datasources") if isinstance(raw.get("datasources"), list) else []
        return cls(_integer(raw, "observedGeneration"), str(raw.get("workload") or ""),
                   str(raw.get("summary") or ""),
                   tuple(AttachmentEntry.parse(p) for p in plugins or ()
                         if isinstance(p, Mapping)),
                   tuple(str(d) for d in datasources or ()), _parse_conditions(raw))

    def to_json(self) -> dict[str, Any]:
        return _compact({
            "observedGeneration": self.observed_generation, "workload": self.workload,
            "summary": self.summary, "plugins": [p.to_json() for p in self.plugins],
            "datasources": list(self.datasources),
            "conditions": [c.to_json() for c in self.conditions] or None})

