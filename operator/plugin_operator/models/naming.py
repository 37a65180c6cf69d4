"""Names, labels and ports that the operator writes and the gateway reads.

The operator and the gateway never talk to each other directly: the gateway finds backends
by reading what the operator created in the cluster. This module is that contract.
"""

from __future__ import annotations

import hashlib
import re

from plugin_operator.models.resources import GROUP

# Labels on every backend pod (and the Service selecting them).
LABEL_PLUGIN = f"{GROUP}/plugin"  # the Plugin object's name
LABEL_PLUGIN_ID = f"{GROUP}/plugin-id"  # plugin.json id, for humans and NetworkPolicies
LABEL_ARTIFACT = f"{GROUP}/artifact"  # first 16 hex digits of the archive's sha256
# On the short-lived pods that copy a plugin out of its image: the Plugin's name. Never
# LABEL_PLUGIN, which would make them look like backends to Services and the gateway.
LABEL_UNPACKS = f"{GROUP}/unpacks"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
COMPONENT_BACKEND = "plugin-backend"
COMPONENT_UNPACK = "plugin-unpack"
MANAGED_BY = "plugin-operator"

# Annotations.
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"  # what the pod was built from; a change rolls it
ANNOTATION_SIDECARS = f"{GROUP}/sidecars"  # JSON {plugin name: grpc port} on a pod template
ANNOTATION_RESTARTS = f"{GROUP}/restarts-seen"  # container restarts already counted
# Plugin restarts the host did inside the container (the kubelet does not see them): their
# count over the pod's life, the host's life and count last added ("<boot>/<count>"), and
# the last exit as JSON {exitCode, reason, message, time}.
ANNOTATION_IN_POD_RESTARTS = f"{GROUP}/in-pod-restarts"
ANNOTATION_IN_POD_SEEN = f"{GROUP}/in-pod-seen"
ANNOTATION_IN_POD_LAST_EXIT = f"{GROUP}/in-pod-last-exit"
ANNOTATION_UPLOAD_TOKEN = f"{GROUP}/upload-token"  # which upload an unpack pod makes

# The ports of the host in every backend container.
GRPC_PORT = 10000
HTTP_PORT = 9100
GRPC_PORT_NAME = "grpc"
HTTP_PORT_NAME = "http-metrics"
# The port an attached Grafana calls: each call balanced over the Plugin's ready replicas.
ATTACH_PORT = 11000
ATTACH_PORT_NAME = "grpc-attach"
# Sidecars share their pod's network namespace, so each gets its own pair of ports:
# gRPC at SIDECAR_GRPC_BASE + n, HTTP at SIDECAR_HTTP_BASE + n, n = 0, 1, ...
SIDECAR_GRPC_BASE = 10001
SIDECAR_HTTP_BASE = 9101
MAX_SIDECARS = 64

# Where the host and the init step keep things inside a backend pod.
PLUGIN_MOUNT = "/var/lib/plugin-operator/plugin"
TERMINATION_LOG = "/dev/termination-log"
BACKEND_CONTAINER = "plugin"
FETCH_CONTAINER = "fetch-plugin"

_DNS_LABEL_MAX = 63


def _dns_safe(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _bounded(prefix: str, name: str, limit: int = _DNS_LABEL_MAX) -> str:
    """``prefix-name``, shortened with a stable hash suffix when it would exceed ``limit``."""
    full = f"{prefix}-{_dns_safe(name)}" if prefix else _dns_safe(name)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{full[:limit - 9].rstrip('-')}-{digest}"


def service_name(plugin_name: str) -> str:
    """The Service in front of a Plugin's backend pods (a DNS label)."""
    return _bounded("plugin", plugin_name)


def peers_service_name(plugin_name: str) -> str:
    """The headless Service listing a Plugin's ready backend pods, one address each: what
    each pod's attach port looks up to balance calls over its peers (a DNS label). A prefix
    of its own, so that no Plugin's name can make it another Plugin's ``plugin-`` Service."""
    return _bounded("peers", plugin_name)


def pod_name(plugin_name: str, spec_hash: str, ordinal: int, spare: bool = False) -> str:
    """Backend pod names are deterministic, so a restarted operator can never create twins:
    the apiserver refuses a second pod with the same name. Each replica has two names:
    while a pod under one is going away (its graceful end takes seconds), its replacement
    starts under the other (``spare``), never under a third."""
    suffix = f"-{spec_hash[:10]}-{ordinal}" + ("s" if spare else "")
    return _bounded("", plugin_name, _DNS_LABEL_MAX - len(suffix)) + suffix


def unpack_pod_name(plugin_name: str, source_hash: str) -> str:
    """The pod copying a Plugin's image out: one name per image source and spec generation,
    so a restarted operator finds the pod it made instead of starting another."""
    suffix = f"-unpack-{source_hash[:10]}"
    return _bounded("", plugin_name, _DNS_LABEL_MAX - len(suffix)) + suffix


def sidecar_container_name(plugin_name: str) -> str:
    return _bounded("plugin", plugin_name)


def sidecar_fetch_container_name(plugin_name: str) -> str:
    return _bounded("fetch", plugin_name)


def sidecar_volume_name(plugin_name: str) -> str:
    return _bounded("plugin", plugin_name)


def backend_labels(plugin_name: str, plugin_id: str) -> dict[str, str]:
    return {
        LABEL_PLUGIN: plugin_name,
        LABEL_PLUGIN_ID: plugin_id[:_DNS_LABEL_MAX].strip("-_."),
        LABEL_COMPONENT: COMPONENT_BACKEND,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: "plugin-operator",
    }


def attachment_object_name(attachment: str, purpose: str) -> str:
    """A ConfigMap or NetworkPolicy a GrafanaAttachment owns: ``attach-<name>-<purpose>``."""
    suffix = f"-{purpose}"
    return _bounded("attach", attachment, _DNS_LABEL_MAX - len(suffix)) + suffix


def attachment_install_container(plugin_id: str) -> str:
    """The init container that installs a plugin's folder into an attached Grafana's pod."""
    return _bounded("install", plugin_id)
