"""What attaching a Grafana workload to our backends takes, as manifests: pure functions.

Grafana always launches the plugin executable it finds in its plugins folder. An executable
built with Grafana's Go SDK (``Manage``), or with ours, that finds
``GF_PLUGIN_GRPC_ADDRESS_<ID>`` in its environment does not serve: it prints go-plugin's
handshake line with that address, and Grafana's go-plugin client sends every call there. So
attaching is: the verified plugin folder in Grafana's plugins directory (byte-identical, so
Grafana's own signature check passes), that variable in the plugin's environment, the
network path open, and optionally the datasources provisioned. docs/grafana.md explains each
piece and how to set it by hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.podspec import Artifact, fetch_container
from plugin_operator.models import naming
from plugin_operator.models.attachment import AttachmentSpec
from plugin_operator.models.resources import API_VERSION, DataSourceSpec, Mode

FIELD_MANAGER = "plugin-operator-attach"
ANNOTATION_ATTACHED = "plugin-operator.dev/attached"  # on the pod template: what it carries
PLUGINS_VOLUME = "plugin-operator-plugins"
TMP_VOLUME = "plugin-operator-attach-tmp"
DATASOURCES_VOLUME = "plugin-operator-datasources"
INSTALL_ROOT = "/var/lib/plugin-operator/plugins"
SECRETS_ROOT = "/etc/plugin-operator/secrets"
DATASOURCES_FILE = "plugin-operator.yaml"
LABEL_ATTACHMENT = "plugin-operator.dev/attachment"


@dataclass(frozen=True)
class AttachmentRef:
    namespace: str
    name: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "GrafanaAttachment", "name": self.name,
                "uid": self.uid, "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class AttachedPlugin:
    """A listed Plugin that is verified and can be installed into Grafana."""

    name: str
    plugin_id: str
    version: str
    artifact: Artifact
    mode: Mode
    address: str


@dataclass(frozen=True)
class ProvisionedDataSource:
    spec: DataSourceSpec
    plugin_id: str


def address_variable(plugin_id: str) -> str:
    """The variable the SDKs' ``Manage`` reads: the id upper-cased, '-' as '_'."""
    return "GF_PLUGIN_GRPC_ADDRESS_" + plugin_id.upper().replace("-", "_")


def pod_mode_address(plugin_name: str, namespace: str) -> str:
    return f"{naming.service_name(plugin_name)}.{namespace}.svc:{naming.ATTACH_PORT}"


def sidecar_address(port: int) -> str:
    return f"127.0.0.1:{port}"


def install_dir(plugin_id: str) -> str:
    return f"{INSTALL_ROOT}/{plugin_id}"


def secret_volume_name(secret: str) -> str:
    return "po-secret-" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def grafana_environment(plugins: Sequence[AttachedPlugin]) -> list[dict[str, str]]:
    """The Grafana container's environment that hands each plugin its backend's address.

    Before Grafana 12.4 a plugin process inherits Grafana's environment, so the SDK's own
    variable on the container reaches it. From 12.4 on it inherits it only for the plugins
    named in ``[plugins] forward_host_env_vars``, which we set for exactly ours. The
    ``[plugin.<id>]`` form (GF_PLUGIN_<KEY> from that section's keys) needs the section in
    an ini file; docs/grafana.md shows it for people who configure Grafana by file.
    """
    env = [{"name": address_variable(p.plugin_id), "value": p.address}
           for p in sorted(plugins, key=lambda p: p.plugin_id)]
    if plugins:
        env.append({"name": "GF_PLUGINS_FORWARD_HOST_ENV_VARS",
                    "value": ",".join(sorted(p.plugin_id for p in plugins))})
    return env


def _secure_references(spec: DataSourceSpec) -> dict[str, str]:
    return {key: f"$__file{{{SECRETS_ROOT}/{ref.name}/{ref.key}}}"
            for key, ref in sorted(spec.secure_json_data_from.items())}


def provisioning_document(datasources: Sequence[ProvisionedDataSource]) -> str:
    """Grafana's datasource provisioning file; secure values only as file references."""
    entries = []
    for item in sorted(datasources, key=lambda d: d.spec.uid):
        spec = item.spec
        entry: dict[str, Any] = {"name": spec.name, "type": item.plugin_id, "uid": spec.uid,
                                 "access": "proxy", "editable": False}
        for key, value in (("url", spec.url), ("user", spec.user),
                           ("database", spec.database)):
            if value:
                entry[key] = value
        if spec.basic_auth:
            entry["basicAuth"] = True
            entry["basicAuthUser"] = spec.basic_auth_user
        if spec.json_data:
            entry["jsonData"] = dict(spec.json_data)
        if spec.secure_json_data_from:
            entry["secureJsonData"] = _secure_references(spec)
        entries.append(entry)
    header = "# Written by plugin-operator from DataSourceInstances; edit those, not this.\n"
    return header + yaml.safe_dump({"apiVersion": 1, "datasources": entries}, sort_keys=True)


def datasources_configmap(attachment: AttachmentRef, document: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": naming.attachment_object_name(attachment.name, "datasources"),
                         "namespace": attachment.namespace,
                         "labels": {LABEL_ATTACHMENT: attachment.name,
                                    naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
                         "ownerReferences": [attachment.owner_reference()]},
            "data": {DATASOURCES_FILE: document}}


def network_policy(attachment: AttachmentRef, plugin_names: Sequence[str],
                   grafana_selector: Mapping[str, str]) -> dict[str, Any]:
    """Grafana's pods may call the attach port of these Plugins' backends; the chart's own
    policy keeps every other door of theirs shut (NetworkPolicies add up)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": naming.attachment_object_name(attachment.name, "grafana"),
                         "namespace": attachment.namespace,
                         "labels": {LABEL_ATTACHMENT: attachment.name,
                                    naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
                         "ownerReferences": [attachment.owner_reference()]},
            "spec": {
                "podSelector": {
                    "matchLabels": {naming.LABEL_COMPONENT: naming.COMPONENT_BACKEND},
                    "matchExpressions": [{"key": naming.LABEL_PLUGIN, "operator": "In",
                                          "values": sorted(plugin_names)}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": dict(grafana_selector)}}],
                             "ports": [{"protocol": "TCP", "port": naming.ATTACH_PORT}]}]}}


def _datasource_mounts(datasources: Sequence[ProvisionedDataSource], provisioning_path: str
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    secrets = sorted({ref.name for d in datasources
                      for ref in d.spec.secure_json_data_from.values()})
    mounts: list[dict[str, Any]] = [{
        "name": DATASOURCES_VOLUME, "readOnly": True, "subPath": DATASOURCES_FILE,
        "mountPath": f"{provisioning_path}/datasources/{DATASOURCES_FILE}"}]
    volumes: list[dict[str, Any]] = []
    for secret in secrets:
        volume = secret_volume_name(secret)
        mounts.append({"name": volume, "mountPath": f"{SECRETS_ROOT}/{secret}",
                       "readOnly": True})
        volumes.append({"name": volume, "secret": {"secretName": secret}})
    return mounts, volumes


def template_fingerprint(plugins: Sequence[AttachedPlugin], datasources_digest: str) -> str:
    """The pod template annotation: a change here rolls the workload."""
    carried = {p.plugin_id: p.artifact.sha256[:16] for p in plugins}
    if datasources_digest:
        carried["datasources"] = datasources_digest
    return json.dumps(carried, sort_keys=True)


def carried_plugins(template_annotations: Mapping[str, str]) -> dict[str, str]:
    """plugin id -> first 16 hex digits of the archive a workload's template carries."""
    try:
        carried = json.loads(template_annotations.get(ANNOTATION_ATTACHED, "{}"))
    except ValueError:
        return {}
    if not isinstance(carried, dict):
        return {}
    return {str(k): str(v) for k, v in carried.items() if k != "datasources"}


def workload_apply_patch(kind: str, namespace: str, name: str, container: str,
                         spec: AttachmentSpec, plugins: Sequence[AttachedPlugin],
                         datasources: Sequence[ProvisionedDataSource], datasources_digest: str,
                         config_map: str | None, config: OperatorConfig) -> dict[str, Any]:
    """Everything the attachment owns in the workload, as one server-side apply body.
    Applying it with no plugins and no datasources removes all of it."""
    body: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind,
                            "metadata": {"name": name, "namespace": namespace}}
    if not plugins and not datasources:
        return body
    init_containers, mounts = [], []
    for plugin in sorted(plugins, key=lambda p: p.plugin_id):
        init_containers.append(fetch_container(
            naming.attachment_install_container(plugin.plugin_id), plugin.artifact, config,
            volume=PLUGINS_VOLUME, tmp_volume=TMP_VOLUME, mount=INSTALL_ROOT,
            dest=install_dir(plugin.plugin_id)))
        # One mount per plugin: plugins Grafana already has in that directory stay visible.
        mounts.append({"name": PLUGINS_VOLUME, "readOnly": True, "subPath": plugin.plugin_id,
                       "mountPath": f"{spec.plugins_path}/{plugin.plugin_id}"})
    volumes: list[dict[str, Any]] = []
    if plugins:
        volumes += [{"name": PLUGINS_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}},
                    {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}]
    if datasources and config_map:
        ds_mounts, ds_volumes = _datasource_mounts(datasources, spec.provisioning_path)
        mounts += ds_mounts
        volumes.append({"name": DATASOURCES_VOLUME, "configMap": {"name": config_map}})
        volumes += ds_volumes
    grafana: dict[str, Any] = {"name": container, "volumeMounts": mounts}
    environment = grafana_environment(plugins)
    if environment:
        grafana["env"] = environment
    body["spec"] = {"template": {
        "metadata": {"annotations": {
            ANNOTATION_ATTACHED: template_fingerprint(plugins, datasources_digest)}},
        "spec": {"initContainers": init_containers, "containers": [grafana],
                 "volumes": volumes}}}
    return body


def rollout_finished(workload: Mapping[str, Any]) -> bool:
    """Every pod of the workload runs its current template and is ready."""
    metadata = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return False
    if workload.get("kind") == "StatefulSet":
        return (status.get("currentRevision") == status.get("updateRevision") and
                int(status.get("readyReplicas") or 0) >= wanted and
                int(status.get("updatedReplicas") or 0) >= wanted)
    return (int(status.get("updatedReplicas") or 0) >= wanted and
            int(status.get("replicas") or 0) == wanted and
            int(status.get("availableReplicas") or 0) >= wanted)


def first_container(workload: Mapping[str, Any]) -> str | None:
    containers = (((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or []
    return str(containers[0]["name"]) if containers else None


def container_names(workload: Mapping[str, Any]) -> list[str]:
    containers = (((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or []
    return [str(c.get("name")) for c in containers]
