"""Install the chart with the real Helm into a fresh release namespace of the e2e cluster.

Shared by every e2e suite that needs the operator (and the gateway) as a user would run them:
the image is the one the ``cluster`` fixture loaded, the plugin namespaces are the test's
own, and the trusted keys and unsigned allowances are the test's signing setup.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.kube import Cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "plugin-operator"
CRDS = REPO_ROOT / "crds"
HELM_TIMEOUT = "5m"


def split_image(image: str) -> tuple[str, str]:
    """``registry/repo:tag`` -> (``registry/repo``, ``tag``); a digest is not supported."""
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"image {image!r} has no tag; the chart needs repository and tag")
    return repository, tag


@dataclass(frozen=True)
class Release:
    cluster: Cluster
    helm: Path
    name: str
    namespace: str
    plugin_namespaces: tuple[str, ...]
    values: dict[str, Any]

    @property
    def fullname(self) -> str:
        """The chart's name for its objects (see po.fullname in _helpers.tpl)."""
        return self.name if "plugin-operator" in self.name else f"{self.name}-plugin-operator"

    @property
    def operator_deployment(self) -> str:
        return self.fullname

    @property
    def gateway_deployment(self) -> str:
        return f"{self.fullname}-gateway"

    def helm_run(self, *args: str, check: bool = True,
                 timeout: float = 420) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.helm), *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}\n{self.diagnostics()}")
        return result

    def operator_pod(self) -> str:
        pods = self.cluster.get(self.namespace, "pods", "-l",
                                "app.kubernetes.io/component=operator")["items"]
        alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        assert len(alive) == 1, f"expected one operator pod, found {len(alive)}"
        return str(alive[0]["metadata"]["name"])

    def operator_logs(self, tail: int = 200) -> str:
        return self.cluster.kubectl(
            "-n", self.namespace, "logs", f"deployment/{self.operator_deployment}",
            f"--tail={tail}", check=False).stdout

    def diagnostics(self) -> str:
        """What to look at when something in the release did not come up."""
        pods = self.cluster.kubectl("-n", self.namespace, "get", "pods", "-o", "wide",
                                    check=False).stdout
        events = self.cluster.kubectl("-n", self.namespace, "get", "events",
                                      "--sort-by=.lastTimestamp", check=False).stdout
        failed = self.cluster.failed_containers(self.namespace)
        return (f"release {self.name} in {self.namespace}:\n{pods}\n{events[-3000:]}\n"
                f"containers that failed:\n{failed or '(none)'}\n"
                f"operator log tail:\n{self.operator_logs(60)}\n{self.cluster.logs_hint}")

    def uninstall(self) -> None:
        self.helm_run("uninstall", self.name, "--namespace", self.namespace, "--wait",
                      "--timeout", HELM_TIMEOUT, check=False)
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false",
                             check=False)


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's own rule for layered values: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_crds(cluster: Cluster) -> None:
    """Helm installs CRDs only when they are absent and never upgrades them; the cluster may
    hold the CRDs of an earlier run, so bring them to this tree's version first."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for crd in sorted(CRDS.glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", "-f", str(crd),
                        "--timeout=60s")


def install_release(cluster: Cluster, helm: Path, workdir: Path, *,
                    plugin_namespaces: Sequence[str],
                    trusted_keys: Mapping[str, str] | None = None,
                    allow_unsigned: Sequence[str] = (),
                    values: Mapping[str, Any] | None = None,
                    prefix: str = "po-e2e") -> Release:
    """Install the chart as a new release in a new namespace and wait until it is ready.

    ``plugin_namespaces`` must exist already (the chart is told not to create them, so the
    tests own their lifecycle); ``trusted_keys`` maps file names to armored public keys;
    ``values`` are merged over ours, mapping by mapping (a list replaces ours).
    """
    repository, tag = split_image(cluster.image)
    suffix = uuid.uuid4().hex[:6]
    name = f"{prefix}-{suffix}"
    namespace = f"{prefix}-system-{suffix}"
    merged: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag,
                  # The image was imported into the nodes' containerd; never pull it.
                  "pullPolicy": "IfNotPresent"},
        "plugins": {"namespaces": list(plugin_namespaces), "createNamespaces": False},
        "operator": {"trustedKeys": {"inline": dict(trusted_keys or {})},
                     "allowUnsignedPlugins": list(allow_unsigned),
                     "logLevel": "INFO"},
        "gateway": {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
        "monitoring": {"prometheusOperator": {"enabled": False}},
        # The example user ClusterRoles have fixed names, so only one release in the cluster
        # may own them; a test that needs them asks for them in ``values``.
        "rbac": {"userRoles": False},
    }
    merged = merge_values(merged, values or {})
    values_file = workdir / f"values-{name}.json"
    values_file.write_text(json.dumps(merged, indent=2))
    release = Release(cluster, helm, name, namespace, tuple(plugin_namespaces), merged)
    apply_crds(cluster)
    try:
        release.helm_run("install", name, str(CHART), "--namespace", namespace,
                         "--create-namespace", "--values", str(values_file), "--wait",
                         "--timeout", HELM_TIMEOUT)
    except BaseException:
        release.uninstall()  # nothing half-installed stays behind
        raise
    return release
