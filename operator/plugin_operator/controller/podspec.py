"""The manifests of a Plugin's backend: its pods, its Service, and its sidecar containers.

Pure functions of the Plugin, the verified artifact and the operator's settings. The same
inputs always give the same manifest and the same spec hash, which is what makes rolling
updates and duplicate-free restarts work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from plugin_operator.controller import tracing
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.models import naming
from plugin_operator.models.resources import API_VERSION, ImageSource, PluginSpec

RUN_AS_USER = 65532
# In our image; see tools/copy-tree.
COPY_TREE = "/opt/plugin-operator/bin/copy-tree"
TOOLS_VOLUME = "tools"
WORK_VOLUME = "work"
UNPACK_DEADLINE_SECONDS = 600
PLUGIN_VOLUME = "plugin"
TMP_VOLUME = "tmp"
# The workload that receives sidecars may have a "tmp" volume of its own.
SIDECAR_TMP_VOLUME = "plugin-operator-tmp"
# The init step installs into a sub-folder, because the archive's install is atomic
# (extracted beside the target and renamed) and needs the mount's root to rename in.
PLUGIN_DIR = f"{naming.PLUGIN_MOUNT}/current"


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int

    def url(self, config: OperatorConfig) -> str:
        return f"{config.artifacts_url.rstrip('/')}/artifacts/{self.sha256}"

    def urls(self, config: OperatorConfig) -> list[str]:
        """Where pods fetch it: the operator's cache first, then the mirrors (the gateways),
        so that pods start while the operator is down or refilling its cache."""
        return [self.url(config), *(f"{m.rstrip('/')}/artifacts/{self.sha256}"
                                    for m in config.artifacts_mirrors)]


@dataclass(frozen=True)
class PluginRef:
    """The identity of the Plugin object that owns what is built here."""

    namespace: str
    name: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "Plugin", "name": self.name,
                "uid": self.uid, "controller": True, "blockOwnerDeletion": True}


def _container_security() -> dict[str, Any]:
    # Pod Security Standard "restricted", field by field.
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def fetch_container(name: str, spec_artifact: Artifact, config: OperatorConfig,
                    volume: str, tmp_volume: str = TMP_VOLUME, mount: str = naming.PLUGIN_MOUNT,
                    dest: str = PLUGIN_DIR) -> dict[str, Any]:
    """An init step that installs the verified archive from the operator's cache, or else a
    mirror's copy, at ``dest`` (inside ``mount``, where its atomic rename happens), checking
    its digest."""
    return {
        "name": name,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": ["fetch", *spec_artifact.urls(config), "--sha256", spec_artifact.sha256,
                 "--dest", dest],
        "securityContext": _container_security(),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                      "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": volume, "mountPath": mount},
                         {"name": tmp_volume, "mountPath": "/tmp"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _backend_container(name: str, spec: PluginSpec, config: OperatorConfig, volume: str,
                       grpc_port: int, http_port: int,
                       tmp_volume: str = TMP_VOLUME,
                       attach_peers: str | None = None,
                       report_url: str | None = None) -> dict[str, Any]:
    """``attach_peers`` (Pod mode): the host also serves the attach port, balancing each
    call over the ready replicas that this name (the peers Service) lists. ``report_url``:
    where the host reports the plugin restarts it does itself."""
    args = ["host", PLUGIN_DIR, "--grpc-port", str(grpc_port), "--http-port", str(http_port),
            "--termination-log", naming.TERMINATION_LOG,
            "--grafana-version", config.grafana_version]
    if attach_peers:
        args += ["--attach-port", str(naming.ATTACH_PORT), "--peers", attach_peers]
    if report_url:
        args += ["--report-url", report_url]
    for key, value in sorted(spec.config.items()):
        args += ["--setting", f"{key}={value}"]
    container: dict[str, Any] = {
        "name": name,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "ports": [{"name": naming.GRPC_PORT_NAME if grpc_port == naming.GRPC_PORT
                   else f"grpc-{grpc_port}", "containerPort": grpc_port, "protocol": "TCP"},
                  {"name": naming.HTTP_PORT_NAME if http_port == naming.HTTP_PORT
                   else f"http-{http_port}", "containerPort": http_port, "protocol": "TCP"}],
        # A Plugin's own env overrides the tracing variables (GF_INSTANCE_OTLP_ADDRESS=""
        # turns tracing off for it); no name twice, which server-side apply refuses.
        "env": [{"name": k, "value": v}
                for k, v in (*tracing.plugin_env(config.tracing, dict(spec.env)), *spec.env)],
        # The host probes the plugin's own grpc.health "plugin" service, which is what
        # Grafana's plugin client treats as "started".
        "readinessProbe": {"grpc": {"port": grpc_port, "service": "plugin"},
                           "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": http_port},
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "terminationMessagePath": naming.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
        "volumeMounts": [{"name": volume, "mountPath": naming.PLUGIN_MOUNT, "readOnly": True},
                         {"name": tmp_volume, "mountPath": "/tmp"}],
    }
    if attach_peers:
        container["ports"].insert(1, {"name": naming.ATTACH_PORT_NAME,
                                      "containerPort": naming.ATTACH_PORT, "protocol": "TCP"})
        # The host's --pod-ip: among the peers, this pod is its own plugin, one hop shorter.
        # Last, so that it wins over a POD_IP of spec.env.
        container["env"].append({"name": "POD_IP", "valueFrom": {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}})
    if spec.resources:
        container["resources"] = {k: dict(v) for k, v in spec.resources.items()}
    return container


def spec_hash(spec: PluginSpec, artifact: Artifact, config: OperatorConfig) -> str:
    """What a backend pod is built from; pods with another hash are rolled."""
    inputs = {"artifact": artifact.sha256, "image": config.image,
              "pull": config.image_pull_policy, "artifactsUrl": config.artifacts_url,
              "resources": spec.resources, "env": spec.env, "config": spec.config}
    if config.artifacts_mirrors:  # absent when unset: pods made before mirrors keep their hash
        inputs["mirrors"] = list(config.artifacts_mirrors)
    if config.tracing.enabled:  # likewise: pods made before tracing was set keep their hash
        inputs["tracing"] = tracing.plugin_env(config.tracing)
    encoded = json.dumps(inputs, sort_keys=True, default=list).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def restart_report_url(config: OperatorConfig, namespace: str, pod: str) -> str:
    """Where a backend pod's host reports the plugin restarts it did itself."""
    return f"{config.artifacts_url.rstrip('/')}/reports/pods/{namespace}/{pod}"


def backend_pod(plugin: PluginRef, spec: PluginSpec, artifact: Artifact,
                config: OperatorConfig, ordinal: int, spare: bool = False) -> dict[str, Any]:
    digest = spec_hash(spec, artifact, config)
    labels = naming.backend_labels(plugin.name, spec.plugin_id)
    labels[naming.LABEL_ARTIFACT] = artifact.sha256[:16]
    name = naming.pod_name(plugin.name, digest, ordinal, spare)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": plugin.namespace,
            "labels": labels,
            "annotations": {naming.ANNOTATION_SPEC_HASH: digest,
                            naming.ANNOTATION_RESTARTS: "0"},
            "ownerReferences": [plugin.owner_reference()],
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 10,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                                "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [fetch_container(naming.FETCH_CONTAINER, artifact, config,
                                                PLUGIN_VOLUME)],
            "containers": [_backend_container(naming.BACKEND_CONTAINER, spec, config,
                                              PLUGIN_VOLUME, naming.GRPC_PORT,
                                              naming.HTTP_PORT,
                                              attach_peers=peers_address(plugin),
                                              report_url=restart_report_url(
                                                  config, plugin.namespace, name))],
            "volumes": [{"name": PLUGIN_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }


def backend_service(plugin: PluginRef, spec: PluginSpec) -> dict[str, Any]:
    labels = naming.backend_labels(plugin.name, spec.plugin_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": naming.service_name(plugin.name), "namespace": plugin.namespace,
                     "labels": labels, "ownerReferences": [plugin.owner_reference()]},
        "spec": {
            "selector": {naming.LABEL_PLUGIN: plugin.name,
                         naming.LABEL_COMPONENT: naming.COMPONENT_BACKEND},
            "ports": [{"name": naming.GRPC_PORT_NAME, "port": naming.GRPC_PORT,
                       "targetPort": naming.GRPC_PORT_NAME, "protocol": "TCP",
                       "appProtocol": "grpc"},
                      # Grafana attaches here: each call goes to the next ready replica.
                      {"name": naming.ATTACH_PORT_NAME, "port": naming.ATTACH_PORT,
                       "targetPort": naming.ATTACH_PORT_NAME, "protocol": "TCP",
                       "appProtocol": "grpc"},
                      {"name": naming.HTTP_PORT_NAME, "port": naming.HTTP_PORT,
                       "targetPort": naming.HTTP_PORT_NAME, "protocol": "TCP"}],
        },
    }


def peers_address(plugin: PluginRef) -> str:
    """What backend pods look up to find their ready peers: the headless peers Service's
    name, dialled on the peers' local (filtered) gRPC port."""
    return (f"{naming.peers_service_name(plugin.name)}.{plugin.namespace}.svc:"
            f"{naming.GRPC_PORT}")


def backend_peers_service(plugin: PluginRef, spec: PluginSpec) -> dict[str, Any]:
    """Headless: its DNS name answers with one address per ready backend pod, which each
    pod's attach port polls to balance calls over its peers."""
    labels = naming.backend_labels(plugin.name, spec.plugin_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": naming.peers_service_name(plugin.name),
                     "namespace": plugin.namespace, "labels": labels,
                     "ownerReferences": [plugin.owner_reference()]},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,  # a draining or starting pod gets no calls
            "selector": {naming.LABEL_PLUGIN: plugin.name,
                         naming.LABEL_COMPONENT: naming.COMPONENT_BACKEND},
            "ports": [{"name": naming.GRPC_PORT_NAME, "port": naming.GRPC_PORT,
                       "targetPort": naming.GRPC_PORT_NAME, "protocol": "TCP",
                       "appProtocol": "grpc"}],
        },
    }


@dataclass(frozen=True)
class Sidecar:
    """One Sidecar-mode Plugin placed in a workload's pod template."""

    plugin_name: str
    spec: PluginSpec
    artifact: Artifact
    slot: int  # gRPC at SIDECAR_GRPC_BASE + slot, HTTP at SIDECAR_HTTP_BASE + slot

    @property
    def grpc_port(self) -> int:
        return naming.SIDECAR_GRPC_BASE + self.slot


def assign_slots(wanted: list[str], current: dict[str, int]) -> dict[str, int]:
    """Ports for the sidecars of one pod template: a plugin keeps its slot while it stays,
    new ones take the lowest free slots, so adding a sidecar never renumbers the others."""
    kept = {name: port - naming.SIDECAR_GRPC_BASE for name, port in current.items()
            if name in wanted and 0 <= port - naming.SIDECAR_GRPC_BASE < naming.MAX_SIDECARS}
    used = set(kept.values())
    slots = dict(kept)
    free = (s for s in range(naming.MAX_SIDECARS) if s not in used)
    for name in sorted(wanted):
        if name not in slots:
            slots[name] = next(free)
    return slots


def sidecar_apply_patch(kind: str, namespace: str, name: str, sidecars: list[Sidecar],
                        config: OperatorConfig) -> dict[str, Any]:
    """The server-side apply body that makes ``sidecars`` exactly our part of the workload's
    pod template; applying it with no sidecars removes every one we added before."""
    init_containers, containers, volumes = [], [], []
    for sidecar in sorted(sidecars, key=lambda s: s.plugin_name):
        volume = naming.sidecar_volume_name(sidecar.plugin_name)
        init_containers.append(fetch_container(
            naming.sidecar_fetch_container_name(sidecar.plugin_name), sidecar.artifact, config,
            volume, SIDECAR_TMP_VOLUME))
        containers.append(_backend_container(
            naming.sidecar_container_name(sidecar.plugin_name), sidecar.spec, config, volume,
            naming.SIDECAR_GRPC_BASE + sidecar.slot, naming.SIDECAR_HTTP_BASE + sidecar.slot,
            SIDECAR_TMP_VOLUME))
        volumes.append({"name": volume, "emptyDir": {"sizeLimit": "1Gi"}})
    if sidecars:
        volumes.append({"name": SIDECAR_TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}})
    annotation = json.dumps({s.plugin_name: s.grpc_port for s in sidecars}, sort_keys=True)
    template: dict[str, Any] = {
        "metadata": {"annotations": {naming.ANNOTATION_SIDECARS: annotation}},
        "spec": {"initContainers": init_containers, "containers": containers,
                 "volumes": volumes},
    }
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": template}}


def image_source_hash(source: ImageSource, generation: int) -> str:
    """One unpack attempt per image source and Plugin generation."""
    inputs = {"reference": source.reference, "path": source.path, "pull": source.pull_policy,
              "generation": generation}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def unpack_pod(plugin: PluginRef, source: ImageSource, source_hash: str, token: str,
               config: OperatorConfig) -> dict[str, Any]:
    """A pod that copies the plugin folder out of its image and uploads it, zipped, to the
    operator, which then verifies it like any archive. Our static copy-tree goes first into
    a shared volume, so the plugin's image needs no shell or tools of its own."""
    work = "/work"
    small = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": naming.unpack_pod_name(plugin.name, source_hash),
            "namespace": plugin.namespace,
            "labels": {naming.LABEL_UNPACKS: plugin.name,
                       naming.LABEL_COMPONENT: naming.COMPONENT_UNPACK,
                       naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
                       naming.LABEL_NAME: "plugin-operator"},
            "annotations": {naming.ANNOTATION_UPLOAD_TOKEN: token},
            "ownerReferences": [plugin.owner_reference()],
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": UNPACK_DEADLINE_SECONDS,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                                "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                {"name": "copy-tools", "image": config.image,
                 "imagePullPolicy": config.image_pull_policy,
                 "command": [COPY_TREE, COPY_TREE, "/tools/copy-tree"],
                 "securityContext": _container_security(), "resources": small,
                 "volumeMounts": [{"name": TOOLS_VOLUME, "mountPath": "/tools"}],
                 "terminationMessagePolicy": "FallbackToLogsOnError"},
                {"name": "copy-plugin", "image": source.reference,
                 "imagePullPolicy": source.pull_policy,
                 "command": ["/tools/copy-tree", source.path, f"{work}/plugin"],
                 "securityContext": _container_security(), "resources": small,
                 "volumeMounts": [{"name": TOOLS_VOLUME, "mountPath": "/tools",
                                   "readOnly": True},
                                  {"name": WORK_VOLUME, "mountPath": work}],
                 "terminationMessagePolicy": "FallbackToLogsOnError"},
            ],
            "containers": [
                {"name": "upload-plugin", "image": config.image,
                 "imagePullPolicy": config.image_pull_policy,
                 "args": ["pack", f"{work}/plugin", "--upload",
                          f"{config.artifacts_url.rstrip('/')}/uploads/{token}"],
                 "securityContext": _container_security(), "resources": small,
                 "volumeMounts": [{"name": WORK_VOLUME, "mountPath": work, "readOnly": True},
                                  {"name": TMP_VOLUME, "mountPath": "/tmp"}],
                 "terminationMessagePolicy": "FallbackToLogsOnError"},
            ],
            "volumes": [{"name": TOOLS_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}},
                        {"name": WORK_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }
