"""Fixtures for the e2e suite: a real cluster, taken through its kubeconfig.

``PLUGIN_OPERATOR_E2E_KUBECONFIG`` (or ``KUBECONFIG``) names the cluster. Without either,
the session brings up this machine's local cluster with ``hack/cluster.sh up``
(idempotent) and imports our image into it with ``hack/image.sh``. Because the tests create
and delete namespaces, they refuse a cluster whose current context is not one of ours
(``plugin-operator-local`` from hack/cluster.sh, ``kind-plugin-operator`` from hack/kind.sh)
unless ``PLUGIN_OPERATOR_E2E_CONTEXT`` names that context explicitly.
On another cluster the image must already be there: ``PLUGIN_OPERATOR_E2E_IMAGE`` names it
(default: what ``hack/image.sh ref`` prints).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kube import Cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
LOCAL_CONTEXT = "plugin-operator-local"
OUR_CONTEXTS = {LOCAL_CONTEXT, "kind-plugin-operator"}
LOCAL_LOGS = "/var/lib/plugin-operator-cluster/logs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


def run_script(*command: str) -> str:
    """Run one of our hack/ scripts; its last stdout line is its answer."""
    result = subprocess.run([str(HACK / command[0]), *command[1:]], capture_output=True,
                            text=True, timeout=5400, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/{' '.join(command)} failed ({result.returncode}):\n"
                    f"{result.stderr[-4000:]}\nlogs: {LOCAL_LOGS}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    given = os.environ.get("PLUGIN_OPERATOR_E2E_KUBECONFIG") or os.environ.get("KUBECONFIG")
    kubeconfig = Path(given) if given else Path(run_script("cluster.sh", "up"))
    kubectl = Path(run_script("build-components.sh", "kubectl")) / "kubectl"
    context = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "config", "current-context"],
        capture_output=True, text=True, check=False, timeout=30,
    ).stdout.strip()
    allowed = OUR_CONTEXTS | {os.environ.get("PLUGIN_OPERATOR_E2E_CONTEXT", "")}
    if context not in allowed:
        pytest.exit(
            f"refusing to run the e2e suite against context {context!r} of {kubeconfig}: it "
            f"creates and deletes namespaces. Use one of {sorted(OUR_CONTEXTS)} or set "
            f"PLUGIN_OPERATOR_E2E_CONTEXT={context} to allow it.",
            returncode=2,
        )
    if context == LOCAL_CONTEXT:
        image = run_script("image.sh", "all")
        hint = f"cluster logs: {LOCAL_LOGS} (hack/cluster.sh status)"
    else:
        image = os.environ.get("PLUGIN_OPERATOR_E2E_IMAGE") or run_script("image.sh", "ref")
        hint = f"cluster: context {context} of {kubeconfig}"
    return Cluster(kubeconfig=kubeconfig, kubectl_path=kubectl, image=image, logs_hint=hint,
                   local=context == LOCAL_CONTEXT)


def create_namespace(cluster: Cluster, prefix: str) -> str:
    """A fresh namespace that enforces the `restricted` Pod Security Standard."""
    name = f"e2e-{prefix[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "plugin-operator.dev/e2e": "true",
                # As docs/helm.md asks of namespaces the chart does not create.
                "plugin-operator.dev/plugins": "true",
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    # The ServiceAccount controller creates `default` shortly after the namespace.
    cluster.wait_for(f"ServiceAccount default in {name}", lambda: cluster.kubectl(
        "-n", name, "get", "serviceaccount", "default", check=False).returncode == 0)
    return name


def delete_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@contextlib.contextmanager
def scoped_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A restricted namespace for the duration of the ``with`` block."""
    name = create_namespace(cluster, prefix)
    try:
        yield name
    finally:
        delete_namespace(cluster, name)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own; deleted afterwards."""
    with scoped_namespace(cluster, request.node.name) as name:
        yield name
