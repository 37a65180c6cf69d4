"""Where a Plugin's ready backends answer, read from the pods that exist right now."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.sidecars import target_of, workload_pods
from plugin_operator.kube.rest import KubeApi
from plugin_operator.models import naming
from plugin_operator.models.resources import Mode, SpecError, parse_plugin_spec


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def sidecar_ready(pod: Mapping[str, Any], container: str) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == container and s.get("ready") for s in statuses)


def sidecar_port(pod: Mapping[str, Any], plugin_name: str) -> int | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        ports = json.loads(annotations.get(naming.ANNOTATION_SIDECARS, "{}"))
    except ValueError:
        return None
    port = ports.get(plugin_name) if isinstance(ports, dict) else None
    return port if isinstance(port, int) else None


async def ready_endpoints(kube: KubeApi, config: OperatorConfig, namespace: str,
                          plugin_name: str, plugin: Mapping[str, Any]) -> list[str]:
    """``host:port`` of every ready backend of the Plugin, in pod mode or sidecar mode."""
    try:
        spec = parse_plugin_spec(plugin.get("spec") or {})
    except SpecError:
        return []
    if spec.mode is Mode.POD:
        # The Plugin's status says when none is ready; its next change (a Plugin event)
        # brings the callers back, so there is no need to list pods until then.
        if not (plugin.get("status") or {}).get("readyReplicas"):
            return []
        pods = await kube.list(f"/api/v1/namespaces/{namespace}/pods",
                               label_selector=f"{naming.LABEL_PLUGIN}={plugin_name}")
        return [f"{p['status']['podIP']}:{naming.GRPC_PORT}" for p in pods
                if _pod_ready(p) and (p.get("status") or {}).get("podIP")
                and not p["metadata"].get("deletionTimestamp")]
    container = naming.sidecar_container_name(plugin_name)
    endpoints = []
    for pod in await workload_pods(kube, target_of(spec, namespace, config)):
        port = sidecar_port(pod, plugin_name)
        ip = (pod.get("status") or {}).get("podIP")
        if port and ip and sidecar_ready(pod, container):
            endpoints.append(f"{ip}:{port}")
    return endpoints
