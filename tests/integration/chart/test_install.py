"""The chart installs, upgrades and uninstalls on a real kube-apiserver, and the RBAC it
grants is what the apiserver itself evaluates (kubectl auth can-i with impersonation).

No controller-manager or kubelet runs here, so no pod starts: this checks the objects, not
the workloads (tests/e2e does that on a real node)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import ControlPlane
from tests.support.wait import eventually
from tests.unit.chart.helm import CHART, Helm

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Release:
    helm: Helm
    plane: ControlPlane
    name: str
    namespace: str
    plugins: str
    values_file: Path

    def run(self, *args: str, check: bool = True) -> str:
        result = self.helm.run(*args, "--kubeconfig", str(self.plane.kubeconfig))
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result.stdout + result.stderr

    def install(self, values: dict[str, Any], command: str = "install") -> str:
        self.values_file.write_text(json.dumps(values))
        return self.run(command, self.name, str(CHART), "--namespace", self.namespace,
                        "--create-namespace", "--values", str(self.values_file))

    def can(self, service_account: str, verb: str, resource: str, namespace: str | None,
            ) -> bool:
        where = ["--namespace", namespace] if namespace else ["--all-namespaces"]
        result = self.plane.kubectl(
            "auth", "can-i", verb, resource, *where,
            f"--as=system:serviceaccount:{self.namespace}:{service_account}", check=False)
        return result.stdout.strip() == "yes"


@pytest.fixture
def release(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    rel = Release(helm, control_plane, f"po-{suffix}", f"po-system-{suffix}",
                  f"po-plugins-{suffix}", tmp_path / "values.json")
    yield rel
    rel.run("uninstall", rel.name, "--namespace", rel.namespace, check=False)
    # The apiserver drops a deleted admission policy from its admission cache a moment after
    # the object goes: the tests after this one (on the same control plane) must not meet it.
    eventually(f"release {rel.name}'s admission policy out of admission",
               lambda: _admitted_elsewhere(control_plane, rel.name), timeout_s=30)


def _admitted_elsewhere(plane: ControlPlane, release: str) -> bool:
    """Whether a Plugin in a namespace no release serves passes admission (dry run) without
    ``release``'s policy refusing it."""
    probe = {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "Plugin",
             "metadata": {"name": "admission-probe", "namespace": "default"},
             "spec": {"pluginId": "probe-admission-datasource", "version": "1.0.0",
                      "source": {"url": "https://example.invalid/probe.zip"}}}
    result = plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe),
                           check=False)
    return release not in result.stderr


def _names(plane: ControlPlane, kind: str, namespace: str) -> set[str]:
    items: Any = plane.get_json(kind, "--namespace", namespace)["items"]
    return {item["metadata"]["name"] for item in items}


def test_install_upgrade_uninstall(release: Release) -> None:
    plane = release.plane
    output = release.install({"plugins": {"namespaces": [release.plugins]}})
    assert "STATUS: deployed" in output
    fullname = f"{release.name}-plugin-operator"
    assert _names(plane, "deployments", release.namespace) == {fullname, f"{fullname}-gateway"}
    assert _names(plane, "services", release.namespace) == {fullname, f"{fullname}-gateway"}
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/plugins.plugin-operator.dev", "crd/datasourceinstances.plugin-operator.dev")
    namespace: Any = plane.get_json("namespace", release.plugins)
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert _names(plane, "networkpolicies", release.plugins) == {f"{fullname}-plugin-backends"}

    release.install({"plugins": {"namespaces": [release.plugins]}, "gateway": {"replicas": 3}},
                    command="upgrade")
    gateway: Any = plane.get_json("deployment", f"{fullname}-gateway", "-n", release.namespace)
    assert gateway["spec"]["replicas"] == 3

    release.run("uninstall", release.name, "--namespace", release.namespace)
    assert _names(plane, "deployments", release.namespace) == set()
    assert _names(plane, "services", release.namespace) == set()
    assert _names(plane, "networkpolicies", release.plugins) == set()
    assert _names(plane, "roles", release.plugins) == set()
    # Helm's rules: CRDs from crds/ stay (with every Plugin in the cluster), and the plugin
    # namespace is kept by its resource policy.
    plane.kubectl("get", "crd/plugins.plugin-operator.dev")
    plane.kubectl("get", "namespace", release.plugins)
    plane.kubectl("delete", "namespace", release.plugins, "--wait=false")


def test_rbac_as_the_apiserver_evaluates_it(release: Release) -> None:
    release.install({"plugins": {"namespaces": [release.plugins]}})
    operator, gateway = f"{release.name}-plugin-operator", f"{release.name}-plugin-operator-gateway"
    plugins, own = release.plugins, release.namespace
    checks = [
        (operator, "create", "pods", plugins, True),
        (operator, "patch", "plugins.plugin-operator.dev/status", plugins, True),
        (operator, "update", "plugins.plugin-operator.dev/finalizers", plugins, True),
        (operator, "patch", "deployments.apps", own, True),
        (operator, "list", "customresourcedefinitions.apiextensions.k8s.io", None, True),
        (operator, "create", "pods", "default", False),
        (operator, "get", "secrets", own, False),
        (operator, "get", "secrets", "default", False),
        (operator, "update", "secrets", plugins, False),
        (gateway, "watch", "datasourceinstances.plugin-operator.dev", plugins, True),
        (gateway, "get", "secrets", plugins, True),
        (gateway, "create", "tokenreviews.authentication.k8s.io", None, True),
        (gateway, "create", "subjectaccessreviews.authorization.k8s.io", None, True),
        (gateway, "watch", "pods", own, True),
        (gateway, "create", "pods", plugins, False),
        (gateway, "get", "secrets", own, False),
        (gateway, "get", "secrets", "default", False),
        (gateway, "patch", "plugins.plugin-operator.dev", plugins, False),
    ]
    wrong = [c for c in checks if release.can(*c[:4]) is not c[4]]
    assert wrong == []


def test_the_querier_role_grants_query(release: Release) -> None:
    release.install({"plugins": {"namespaces": [release.plugins]}})
    plane = release.plane
    plane.kubectl("create", "serviceaccount", "dashboards", "-n", release.plugins)
    user = f"system:serviceaccount:{release.plugins}:dashboards"

    def can_query() -> bool:
        result = plane.kubectl("auth", "can-i", "query",
                               "datasourceinstances.plugin-operator.dev", "-n", release.plugins,
                               f"--as={user}", check=False)
        return result.stdout.strip() == "yes"

    assert not can_query()
    plane.kubectl("create", "rolebinding", "dashboards-query", "-n", release.plugins,
                  "--clusterrole=plugin-operator-datasource-querier",
                  f"--serviceaccount={release.plugins}:dashboards")
    assert can_query()
    plane.kubectl("delete", "namespace", release.plugins, "--wait=false")
