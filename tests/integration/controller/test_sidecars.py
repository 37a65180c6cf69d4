"""Sidecar mode on a real apiserver: server-side apply into a Deployment, and back out."""

from __future__ import annotations

import json

import pytest

from tests.integration.controller.conftest import OperatorProcess, archive_configmap, plugin_object
from tests.support.samples import SignedSample

pytestmark = pytest.mark.integration

TARGET = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "workload"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "workload"}},
             "template": {"metadata": {"labels": {"app": "workload"}},
                          "spec": {"containers": [{"name": "main", "image": "busybox:1",
                                                   "command": ["sleep", "3600"]}]}}},
}


def _template(op: OperatorProcess) -> dict[str, object]:
    return dict(op.get("deployment", "workload")["spec"]["template"])


def _containers(op: OperatorProcess) -> list[str]:
    spec = _template(op)["spec"]
    return [c["name"] for c in spec["containers"]]  # type: ignore[index]


def test_sidecar_joins_the_target_and_leaves_on_delete(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    operator.apply(TARGET)
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("side", "archive", mode="Sidecar",
                                 sidecar={"targetRef": {"kind": "Deployment",
                                                        "name": "workload"}}))
    operator.wait_for("the sidecar container", lambda: "plugin-side" in _containers(operator))
    template = _template(operator)
    annotations = template["metadata"]["annotations"]  # type: ignore[index]
    assert json.loads(annotations["plugin-operator.dev/sidecars"]) == {"side": 10001}
    init = [c["name"] for c in template["spec"]["initContainers"]]  # type: ignore[index]
    assert init == ["fetch-side"]
    assert _containers(operator) == ["main", "plugin-side"], "the workload's own container stays"
    plugin = operator.get("plugin", "side")
    assert "plugin-operator.dev/sidecar-cleanup" in plugin["metadata"]["finalizers"]
    assert plugin["status"]["sidecarTarget"] == f"Deployment {operator.namespace}/workload"
    assert operator.pods("side") == [], "a sidecar plugin has no pods of its own"

    operator.kubectl("delete", "plugin", "side", "--wait=true", "--timeout=60s")
    assert _containers(operator) == ["main"]
    spec = _template(operator)["spec"]
    assert not spec.get("initContainers")  # type: ignore[union-attr]
