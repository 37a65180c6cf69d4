"""DataSourceInstances: Plugin and Secret resolution, settings versions, real health checks.

The plugin's backend is the real Python sample under the real host, listening on loopback
where the (kubelet-less) pod's reported IP points, so CheckHealth crosses the real protocol.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.controller.conftest import (
    CLI,
    OperatorProcess,
    archive_configmap,
    plugin_object,
)
from tests.support.kube import REPO_ROOT
from tests.support.samples import SignedSample

pytestmark = pytest.mark.integration


@pytest.fixture
def backend_on_loopback(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Python sample served by the host on 127.0.0.1:10000, the pod's gRPC port."""
    ports = tmp_path / "ports.json"
    with (tmp_path / "host.log").open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "host", str(REPO_ROOT / "plugins" / "testdata-python"),
             "--grpc-bind", "127.0.0.1", "--grpc-port", "10000", "--http-bind", "127.0.0.1",
             "--http-port", "0", "--termination-log", str(tmp_path / "termination"),
             "--ports-file", str(ports)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ports.exists():
        assert process.poll() is None, (tmp_path / "host.log").read_text()
        assert time.monotonic() < deadline, "the plugin host did not start"
        time.sleep(0.1)
    yield process
    process.terminate()
    process.wait(timeout=30)


def _running_plugin(op: OperatorProcess, archive: Path) -> None:
    archive_configmap(op, "archive", archive)
    op.apply(plugin_object("testdata", "archive"))
    (pod,) = op.wait_for("the backend pod", lambda: op.pods("testdata"))
    op.kubelet_reports(pod["metadata"]["name"], ready=True, ip="127.0.0.1")
    op.wait_for("Running", lambda: op.status("plugin", "testdata").get("phase") == "Running")


def _secret(op: OperatorProcess, name: str, **values: str) -> None:
    op.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})


def _datasource(name: str, plugin: str = "testdata", secret: str = "creds",
                key: str = "apiKey") -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "DataSourceInstance",
            "metadata": {"name": name},
            "spec": {"pluginRef": {"name": plugin}, "uid": f"{name}-uid",
                     "jsonData": {"endpoint": "https://metrics.example.invalid"},
                     "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {"name": secret,
                                                                        "key": key}}},
                     "healthCheck": {"interval": "5s"}}}


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def test_healthy_datasource_and_secret_rotation(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        backend_on_loopback: subprocess.Popen[bytes]) -> None:
    _running_plugin(operator, signed_testdata_python.archive)
    _secret(operator, "creds", apiKey="first")
    operator.apply(_datasource("good"))
    status = operator.wait_for(
        "Healthy", lambda: (s := operator.status("datasourceinstance", "good")) and
        _conditions(s).get("Healthy", {}).get("status") == "True" and s)
    assert status["health"]["status"] == "OK"
    assert status["health"]["message"] == "connected to https://metrics.example.invalid"
    assert status["health"]["details"] == {"endpoint": "https://metrics.example.invalid",
                                           "keyLength": 5}
    assert status["pluginId"] == "plugin-operator-testdata-datasource"
    assert _conditions(status)["PluginReady"]["status"] == "True"
    first_version = status["settingsVersion"]

    # A new secret value reaches the plugin with a newer lastUpdatedMS.
    _secret(operator, "creds", apiKey="second-key")
    status = operator.wait_for(
        "the rotated secret", lambda: (s := operator.status("datasourceinstance", "good"))
        and s["settingsVersion"] > first_version
        and s["health"].get("details", {}).get("keyLength") == 10 and s)
    assert status["health"]["status"] == "OK"
    operator.wait_for("a Healthy event", lambda: any(
        e.startswith("Healthy: CheckHealth: OK") for e in operator.events("good")))


def test_plugin_side_failure_is_unhealthy(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        backend_on_loopback: subprocess.Popen[bytes]) -> None:
    _running_plugin(operator, signed_testdata_python.archive)
    _secret(operator, "creds", apiKey="")
    operator.apply(_datasource("empty-key"))
    status = operator.wait_for(
        "Healthy False", lambda: (s := operator.status("datasourceinstance", "empty-key"))
        and _conditions(s).get("Healthy", {}).get("status") == "False" and s)
    assert status["health"] == {**status["health"], "status": "ERROR",
                                "message": "secure setting apiKey is missing"}
    assert _conditions(status)["Healthy"]["reason"] == "CheckFailed"


@pytest.mark.parametrize(("spec_change", "reason", "message"), [
    ({"secret": "absent"}, "SecretNotFound", "Secret {ns}/absent, which does not exist"),
    ({"key": "token"}, "SecretNotFound", "has no such key (it has: apiKey)"),
    ({"plugin": "nonexistent"}, "PluginNotFound",
     "Plugin 'nonexistent' does not exist in namespace '{ns}'"),
])
def test_broken_references_are_clear_conditions(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        spec_change: dict[str, str], reason: str, message: str) -> None:
    _running_plugin(operator, signed_testdata_python.archive)
    _secret(operator, "creds", apiKey="k")
    operator.apply(_datasource("broken", **spec_change))
    status = operator.wait_for(
        reason, lambda: (s := operator.status("datasourceinstance", "broken"))
        and _conditions(s).get("Healthy", {}).get("reason") == reason and s)
    assert message.format(ns=operator.namespace) in _conditions(status)["Healthy"]["message"]
    assert status["health"]["status"] == "UNKNOWN"
    assert operator.process is not None
    assert operator.process.poll() is None
