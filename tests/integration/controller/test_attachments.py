"""GrafanaAttachments on a real apiserver: into a Grafana Deployment, reported, and back out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from tests.integration.controller.conftest import (
    TESTDATA_ID,
    OperatorProcess,
    archive_configmap,
    plugin_object,
)
from tests.support.samples import SignedSample

pytestmark = pytest.mark.integration

SECRET_VALUE = "s3cr3t-never-in-a-configmap"
GRAFANA = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "grafana"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "grafana"}},
             "template": {"metadata": {"labels": {"app": "grafana"}},
                          "spec": {"containers": [{
                              "name": "grafana", "image": "grafana/grafana:12.3.0",
                              "env": [{"name": "GF_LOG_LEVEL", "value": "debug"}],
                              "volumeMounts": [{"name": "data",
                                                "mountPath": "/var/lib/grafana"}]}],
                                   "volumes": [{"name": "data", "emptyDir": {}}]}}},
}


def _attachment(plugins: list[str], provision: bool = True) -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "GrafanaAttachment",
            "metadata": {"name": "grafana"},
            "spec": {"workloadRef": {"kind": "Deployment", "name": "grafana"},
                     "plugins": [{"name": p} for p in plugins],
                     "datasources": {"provision": provision}}}


def _grafana_container(op: OperatorProcess) -> dict[str, Any]:
    template = op.get("deployment", "grafana")["spec"]["template"]
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "grafana"]
    return dict(container)


def _template_spec(op: OperatorProcess) -> dict[str, Any]:
    return dict(op.get("deployment", "grafana")["spec"]["template"]["spec"])


def _finish_rollout(op: OperatorProcess) -> None:
    """Play the Deployment controller: every replica runs the current template."""
    generation = op.get("deployment", "grafana")["metadata"]["generation"]
    status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
              "readyReplicas": 1, "availableReplicas": 1}
    op.kubectl("patch", "deployment", "grafana", "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))


def _object_exists(op: OperatorProcess, kind: str, name: str) -> bool:
    found = op.kubectl("get", kind, name, "--ignore-not-found", "-o", "name", check=False)
    return bool(found.stdout.strip())


def test_attach_report_and_detach(operator: OperatorProcess,
                                  signed_testdata_python: SignedSample) -> None:
    operator.apply(GRAFANA)
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("testdata", "archive"))
    operator.kubectl("create", "secret", "generic", "db",
                     f"--from-literal=password={SECRET_VALUE}")
    operator.apply({"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "DataSourceInstance",
                    "metadata": {"name": "testdata-ds"},
                    "spec": {"pluginRef": {"name": "testdata"}, "uid": "testdata-ds",
                             "jsonData": {"mode": "attached"},
                             "secureJsonDataFrom": {"password": {"secretKeyRef": {
                                 "name": "db", "key": "password"}}}}})
    operator.apply(_attachment(["testdata"]))

    container = operator.wait_for("the plugin in Grafana's pod template", lambda: (
        c := _grafana_container(operator)) and c.get("env") and len(c["env"]) > 1 and c)
    env = {e["name"]: e.get("value") for e in container["env"]}
    variable = "GF_PLUGIN_GRPC_ADDRESS_" + TESTDATA_ID.upper().replace("-", "_")
    assert env[variable] == f"plugin-testdata.{operator.namespace}.svc:11000"
    assert env["GF_PLUGINS_FORWARD_HOST_ENV_VARS"] == TESTDATA_ID
    assert env["GF_LOG_LEVEL"] == "debug", "Grafana's own settings stay"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[f"/var/lib/grafana/plugins/{TESTDATA_ID}"]["subPath"] == TESTDATA_ID
    assert "/var/lib/grafana" in mounts
    inits = _template_spec(operator)["initContainers"]
    sha = operator.status("plugin", "testdata")["artifact"]["sha256"]
    assert [c["name"] for c in inits] == [f"install-{TESTDATA_ID}"]
    assert sha in inits[0]["args"]

    configmap = operator.get("configmap", "attach-grafana-datasources")
    document = configmap["data"]["plugin-operator.yaml"]
    assert SECRET_VALUE not in json.dumps(configmap)
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in json.dumps(configmap)
    (datasource,) = yaml.safe_load(document)["datasources"]
    assert datasource["type"] == TESTDATA_ID
    assert datasource["uid"] == "testdata-ds"
    assert datasource["secureJsonData"]["password"].startswith("$__file{")
    policy = operator.get("networkpolicy", "attach-grafana-grafana")
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "grafana"}}}]

    status = operator.wait_for("attached, not yet current", lambda: (
        s := operator.status("grafanaattachment", "grafana")) and s.get("plugins") and
        s["plugins"][0]["attached"] and s)
    assert status["plugins"][0]["current"] is False
    assert status["plugins"][0]["sha256"] == sha
    _finish_rollout(operator)
    status = operator.wait_for("current once the rollout finished", lambda: (
        s := operator.status("grafanaattachment", "grafana")) and
        s["plugins"][0]["current"] and s)
    assert status["conditions"][0]["status"] == "True"
    assert status["summary"] == "1/1"
    assert status["datasources"] == ["testdata-ds"]

    # Detaching removes exactly what the attachment added.
    operator.kubectl("delete", "grafanaattachment", "grafana", "--wait=true", "--timeout=60s")
    container = _grafana_container(operator)
    assert [e["name"] for e in container["env"]] == ["GF_LOG_LEVEL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/var/lib/grafana"]
    spec = _template_spec(operator)
    assert not spec.get("initContainers")
    assert [v["name"] for v in spec["volumes"]] == ["data"]
    assert not _object_exists(operator, "configmap", "attach-grafana-datasources")
    assert not _object_exists(operator, "networkpolicy", "attach-grafana-grafana")


def test_unknown_plugin_and_container_are_reported(operator: OperatorProcess) -> None:
    operator.apply(GRAFANA)
    operator.apply(_attachment(["nope"], provision=False))
    status = operator.wait_for("the missing Plugin reported", lambda: (
        s := operator.status("grafanaattachment", "grafana")) and s.get("plugins") and s)
    assert "Plugin 'nope' does not exist" in status["plugins"][0]["message"]
    assert status["conditions"][0]["status"] == "False"
    assert not _template_spec(operator).get("initContainers")

    attachment = _attachment(["nope"], provision=False)
    attachment["spec"]["container"] = "grafana-server"
    operator.apply(attachment)
    status = operator.wait_for("the missing container reported", lambda: (
        s := operator.status("grafanaattachment", "grafana")) and
        s["conditions"][0]["reason"] == "ContainerMissing" and s)
    assert "spec.container" in status["conditions"][0]["message"]
