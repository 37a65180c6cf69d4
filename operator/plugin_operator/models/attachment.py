"""The typed view of a GrafanaAttachment: which Grafana workload gets which Plugins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugin_operator.models.resources import GROUP, SpecError, WorkloadRef

ATTACHMENT_PLURAL = "grafanaattachments"
ATTACHMENT_FINALIZER = f"{GROUP}/attachment-cleanup"
DEFAULT_PLUGINS_PATH = "/var/lib/grafana/plugins"
DEFAULT_PROVISIONING_PATH = "/etc/grafana/provisioning"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
MAX_PLUGINS = 64


@dataclass(frozen=True)
class AttachmentSpec:
    workload: WorkloadRef
    plugin_names: tuple[str, ...]
    container: str | None = None
    plugins_path: str = DEFAULT_PLUGINS_PATH
    provision_datasources: bool = False
    provisioning_path: str = DEFAULT_PROVISIONING_PATH


def _absolute(value: Any, where: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not value.startswith("/") or ".." in value:
        raise SpecError(where, f"must be an absolute path without '..', not {value!r}")
    return value.rstrip("/") or "/"


def parse_attachment_spec(spec: Mapping[str, Any]) -> AttachmentSpec:
    """Parse a GrafanaAttachment's ``spec`` (defaults as the CRD declares them)."""
    ref = spec.get("workloadRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise SpecError("spec.workloadRef", "must name the Grafana workload (kind and name)")
    kind = ref.get("kind")
    if kind not in WORKLOAD_KINDS:
        raise SpecError("spec.workloadRef.kind", f"must be one of {', '.join(WORKLOAD_KINDS)}, "
                                                 f"not {kind!r}")
    entries = spec.get("plugins")
    if not isinstance(entries, list):
        raise SpecError("spec.plugins", "must list the Plugins to attach, e.g. [{name: my-ds}]")
    if len(entries) > MAX_PLUGINS:
        raise SpecError("spec.plugins", f"may list at most {MAX_PLUGINS} Plugins")
    names: list[str] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise SpecError(f"spec.plugins[{index}].name", "is required")
        if name in names:
            raise SpecError(f"spec.plugins[{index}].name", f"{name!r} is listed twice")
        names.append(name)
    container = spec.get("container")
    if container is not None and not isinstance(container, str):
        raise SpecError("spec.container", f"must be a container name, not {container!r}")
    datasources = spec.get("datasources") or {}
    if not isinstance(datasources, Mapping):
        raise SpecError("spec.datasources", "must be an object")
    provision = datasources.get("provision", False)
    if not isinstance(provision, bool):
        raise SpecError("spec.datasources.provision", f"must be true or false, not {provision!r}")
    return AttachmentSpec(
        workload=WorkloadRef(kind=str(kind), name=str(ref["name"])),
        plugin_names=tuple(names),
        container=container or None,
        plugins_path=_absolute(spec.get("pluginsPath"), "spec.pluginsPath",
                               DEFAULT_PLUGINS_PATH),
        provision_datasources=provision,
        provisioning_path=_absolute(datasources.get("provisioningPath"),
                                    "spec.datasources.provisioningPath",
                                    DEFAULT_PROVISIONING_PATH),
    )
