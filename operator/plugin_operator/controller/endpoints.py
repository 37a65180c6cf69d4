"""Where a Plugin's ready backends answer, read from the pods that exist right now.

The pods are read with the gateway's own parsers, so the operator's health checks and the
gateway's calls agree on what a ready backend is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.sidecars import target_of, workload_pods
from plugin_operator.kube.rest import KubeApi
from plugin_operator.models import naming
from plugin_operator.models.resources import Mode, SpecError, parse_plugin_spec
from plugin_operator.models.status import PluginStatus
from plugin_operator.models.world import ObjectError, parse_backend_pod, parse_gateway_pod


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
        if not PluginStatus.parse(plugin.get("status")).ready_replicas:
            return []
        pods = await kube.list(f"/api/v1/namespaces/{namespace}/pods",
                               label_selector=f"{naming.LABEL_PLUGIN}={plugin_name}")
        records = [parse_backend_pod(p) for p in pods]
        return [f"{r.ip}:{naming.GRPC_PORT}" for r in records if r.ready]
    container = naming.sidecar_container_name(plugin_name)
    endpoints = []
    for pod in await workload_pods(kube, target_of(spec, namespace, config)):
        try:
            carrier = parse_gateway_pod(pod)
        except ObjectError:
            continue
        port = carrier.sidecar_ports.get(plugin_name)
        ip = (pod.get("status") or {}).get("podIP")
        if port and ip and container in carrier.ready_containers:
            endpoints.append(f"{ip}:{port}")
    return endpoints
