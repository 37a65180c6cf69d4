"""The CRDs on a real kube-apiserver: admission, immutability, status, kubectl's views."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import REPO_ROOT, ControlPlane

pytestmark = pytest.mark.integration

GROUP_VERSION = "plugin-operator.dev/v1alpha1"
VALID_PLUGIN: dict[str, Any] = {
    "apiVersion": GROUP_VERSION,
    "kind": "Plugin",
    "metadata": {"name": "p"},
    "spec": {
        "pluginId": "myorg-example-datasource",
        "version": "1.2.3",
        "source": {"url": "https://plugins.example.com/example-1.2.3.zip", "sha256": "a" * 64},
    },
}
VALID_ATTACHMENT: dict[str, Any] = {
    "apiVersion": GROUP_VERSION,
    "kind": "GrafanaAttachment",
    "metadata": {"name": "a"},
    "spec": {"workloadRef": {"kind": "Deployment", "name": "grafana"},
             "plugins": [{"name": "p"}]},
}
VALID_DATASOURCE: dict[str, Any] = {
    "apiVersion": GROUP_VERSION,
    "kind": "DataSourceInstance",
    "metadata": {"name": "d"},
    "spec": {"pluginRef": {"name": "p"}, "uid": "my-ds_1"},
}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    obj = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return obj


INVALID_OBJECTS = [
    ("no source", _with(VALID_PLUGIN, "spec.source", ...), "spec.source: Required value"),
    ("empty source", _with(VALID_PLUGIN, "spec.source", {}),
     "must set exactly one of url, configMapRef, image or catalog"),
    ("two sources", _with(VALID_PLUGIN, "spec.source.configMapRef", {"name": "c", "key": "k"}),
     "must set exactly one of url, configMapRef, image or catalog"),
    ("sha256 not hex", _with(VALID_PLUGIN, "spec.source.sha256", "XYZ"),
     "64 lowercase hexadecimal digits"),
    ("sha256 with image", _with(_with(VALID_PLUGIN, "spec.source", {"image": {
        "reference": "example/plugin:1"}}), "spec.source.sha256", "a" * 64),
     "pinned by its digest"),
    ("url not http", _with(VALID_PLUGIN, "spec.source.url", "ftp://example.com/p.zip"),
     "must be an http:// or https:// URL"),
    ("configMapRef without key", _with(VALID_PLUGIN, "spec.source", {
        "configMapRef": {"name": "archive"}}), "spec.source.configMapRef.key: Required value"),
    ("negative replicas", _with(VALID_PLUGIN, "spec.replicas", -1),
     "should be greater than or equal to 0"),
    ("too many replicas", _with(VALID_PLUGIN, "spec.replicas", 1000),
     "should be less than or equal to 64"),
    ("sidecar without Sidecar mode", _with(VALID_PLUGIN, "spec.sidecar", {
        "targetRef": {"kind": "Deployment", "name": "gw"}}),
     "spec.sidecar may only be set when spec.mode is Sidecar"),
    ("unknown mode", _with(VALID_PLUGIN, "spec.mode", "Daemon"), 'Unsupported value: "Daemon"'),
    ("version not semver", _with(VALID_PLUGIN, "spec.version", "latest"),
     "must be a semantic version such as 1.2.3"),
    ("plugin id with capitals", _with(VALID_PLUGIN, "spec.pluginId", "MyOrg-Thing"),
     "must be a Grafana plugin id"),
    ("unknown signature policy", _with(VALID_PLUGIN, "spec.signature", {"policy": "Trust"}),
     'Unsupported value: "Trust"'),
    ("config key with dash", _with(VALID_PLUGIN, "spec.config", {"log-level": "debug"}),
     "use letters, digits and '_' only"),
    ("env name starting with a digit", _with(VALID_PLUGIN, "spec.env", [{"name": "1X"}]),
     "must be a valid environment variable name"),
    ("app secret ref with bad name", _with(VALID_PLUGIN, "spec.app", {"secureJsonDataFrom": {
        "token": {"secretKeyRef": {"name": "Bad_Name", "key": "token"}}}}),
     "secretKeyRef.name must be a valid Secret name"),
    ("datasource uid with spaces", _with(VALID_DATASOURCE, "spec.uid", "my ds"),
     "must be 1 to 40 letters, digits, '-' or '_'"),
    ("datasource uid too long", _with(VALID_DATASOURCE, "spec.uid", "u" * 41),
     "may not be more than 40 bytes"),
    ("datasource without pluginRef", _with(VALID_DATASOURCE, "spec.pluginRef", ...),
     "spec.pluginRef: Required value"),
    ("secret ref without key", _with(VALID_DATASOURCE, "spec.secureJsonDataFrom", {
        "apiKey": {"secretKeyRef": {"name": "creds"}}}), "secretKeyRef.key: Required value"),
    ("secret ref key with slash", _with(VALID_DATASOURCE, "spec.secureJsonDataFrom", {
        "apiKey": {"secretKeyRef": {"name": "creds", "key": "a/b"}}}),
     "secretKeyRef.key must be a valid Secret key"),
    ("secure field name with space", _with(VALID_DATASOURCE, "spec.secureJsonDataFrom", {
        "api key": {"secretKeyRef": {"name": "creds", "key": "k"}}}),
     "spec.secureJsonDataFrom keys must be"),
    ("health interval too short", _with(VALID_DATASOURCE, "spec.healthCheck", {"interval": "1s"}),
     "must be a duration between 5s and 24h"),
    ("health interval not a duration", _with(VALID_DATASOURCE, "spec.healthCheck", {
        "interval": "often"}), "must be a duration between 5s and 24h"),
    ("basicAuthUser without basicAuth", _with(VALID_DATASOURCE, "spec.basicAuthUser", "bob"),
     "basicAuthUser is only used with basicAuth: true"),
    ("attachment to a DaemonSet", _with(VALID_ATTACHMENT, "spec.workloadRef.kind", "DaemonSet"),
     'supported values: "Deployment", "StatefulSet"'),
    ("attachment workload name", _with(VALID_ATTACHMENT, "spec.workloadRef.name", "Graf ana"),
     "spec.workloadRef.name must be a valid workload name"),
    ("attachment plugin listed twice", _with(VALID_ATTACHMENT, "spec.plugins",
                                             [{"name": "p"}, {"name": "p"}]),
     "Duplicate value"),
    ("attachment relative plugins path", _with(VALID_ATTACHMENT, "spec.pluginsPath", "plugins"),
     "spec.pluginsPath must be an absolute path"),
    ("attachment without plugins", _with(VALID_ATTACHMENT, "spec.plugins", ...),
     "spec.plugins: Required value"),
]


def _apply(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    result = plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj),
                           check=False)
    return result.returncode, result.stderr


def test_crds_are_established(crds: ControlPlane) -> None:
    for name in ("plugins.plugin-operator.dev", "datasourceinstances.plugin-operator.dev",
                 "grafanaattachments.plugin-operator.dev"):
        crd = crds.get_json("crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}  # type: ignore[index]
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


@pytest.mark.parametrize("example", sorted((REPO_ROOT / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_applies(crds: ControlPlane, namespace: str, example: Path) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(example))
    for doc in yaml.safe_load_all(example.read_text()):
        kind, name = doc["kind"], doc["metadata"]["name"]
        assert crds.get_json("-n", namespace, kind.lower(), name)["metadata"]


def test_valid_objects_are_accepted(crds: ControlPlane, namespace: str) -> None:
    for obj in (VALID_PLUGIN, VALID_DATASOURCE, VALID_ATTACHMENT):
        code, stderr = _apply(crds, namespace, obj)
        assert code == 0, stderr


@pytest.mark.parametrize(("case", "obj", "message"), INVALID_OBJECTS,
                         ids=[case for case, _, _ in INVALID_OBJECTS])
def test_invalid_object_is_rejected_with_a_useful_message(
        crds: ControlPlane, namespace: str, case: str, obj: dict[str, Any], message: str) -> None:
    code, stderr = _apply(crds, namespace, obj)
    assert code != 0, f"{case}: the apiserver accepted an invalid object"
    assert message in stderr, f"{case}: expected {message!r} in:\n{stderr}"
    assert crds.kubectl("get", "-n", namespace, obj["kind"].lower(), obj["metadata"]["name"],
                        check=False).returncode != 0, "a rejected object must not exist"


@pytest.mark.parametrize(("base", "path", "new", "message"), [
    (VALID_PLUGIN, "spec.pluginId", "myorg-other-datasource", "spec.pluginId is immutable"),
    (VALID_DATASOURCE, "spec.uid", "another-uid", "spec.uid is immutable"),
])
def test_identity_fields_are_immutable(crds: ControlPlane, namespace: str, base: dict[str, Any],
                                       path: str, new: str, message: str) -> None:
    code, stderr = _apply(crds, namespace, base)
    assert code == 0, stderr
    code, stderr = _apply(crds, namespace, _with(base, path, new))
    assert code != 0
    assert message in stderr
    stored = crds.get_json("-n", namespace, base["kind"].lower(), base["metadata"]["name"])
    assert stored["spec"][path.split(".")[1]] == base["spec"][path.split(".")[1]]  # type: ignore[index]


PLUGIN_STATUS = {
    "phase": "Running",
    "message": "1 of 1 backends ready",
    "observedGeneration": 1,
    "signature": {"status": "valid", "type": "private", "org": "Example Org",
                  "keyId": "7e4d0c6a708866e7", "errorCode": ""},
    "plugin": {"type": "datasource", "name": "Example", "backend": True,
               "executable": "gpx_example_linux_amd64", "streaming": True, "alerting": False,
               "version": "1.2.3"},
    "artifact": {"sha256": "b" * 64, "size": 12345,
                 "url": "http://operator.plugin-operator.svc:8081/artifacts/" + "b" * 64},
    "serviceName": "plugin-p",
    "replicas": 1,
    "readyReplicas": 1,
    "restarts": 2,
    "lastFailure": {"pod": "plugin-p-abc", "exitCode": 2, "reason": "Error",
                    "message": "panic: boom\n", "time": "2026-11-20T10:00:00Z"},
    "conditions": [
        {"type": "SignatureValid", "status": "True", "reason": "Valid", "message": "ok",
         "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1},
        {"type": "BackendReady", "status": "True", "reason": "Ready", "message": "ok",
         "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1},
    ],
}
DATASOURCE_STATUS = {
    "observedGeneration": 1,
    "pluginId": "myorg-example-datasource",
    "settingsVersion": 1763632800123,
    "settingsHash": "c" * 64,
    "health": {"status": "ERROR", "message": "bad key", "details": {"verbose": {"nested": [1]}},
               "checkedAt": "2026-11-20T10:00:00Z"},
    "conditions": [{"type": "Healthy", "status": "False", "reason": "CheckFailed",
                    "message": "bad key", "lastTransitionTime": "2026-11-20T10:00:00Z"}],
}


@pytest.mark.parametrize(("obj", "status"), [(VALID_PLUGIN, PLUGIN_STATUS),
                                             (VALID_DATASOURCE, DATASOURCE_STATUS)],
                         ids=["Plugin", "DataSourceInstance"])
def test_status_subresource_keeps_everything_the_operator_writes(
        crds: ControlPlane, namespace: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
    code, stderr = _apply(crds, namespace, obj)
    assert code == 0, stderr
    kind, name = obj["kind"].lower(), obj["metadata"]["name"]
    crds.kubectl("patch", "-n", namespace, kind, name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))
    stored = crds.get_json("-n", namespace, kind, name)
    assert stored["status"] == status
    # The main resource ignores status, and the status subresource ignores spec.
    crds.kubectl("patch", "-n", namespace, kind, name, "--type=merge",
                 "-p", json.dumps({"status": {"observedGeneration": 99}}))
    assert crds.get_json("-n", namespace, kind, name)["status"] == status


def test_kubectl_get_shows_the_printer_columns(crds: ControlPlane, namespace: str) -> None:
    assert _apply(crds, namespace, VALID_PLUGIN)[0] == 0
    assert _apply(crds, namespace, VALID_DATASOURCE)[0] == 0
    # VERSION is what runs (a catalog's latest resolved), not spec.version.
    running = copy.deepcopy(PLUGIN_STATUS)
    running["plugin"]["version"] = "1.2.4"  # type: ignore[index]
    crds.kubectl("patch", "-n", namespace, "plugin", "p", "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": running}))
    crds.kubectl("patch", "-n", namespace, "dsi", "d", "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": DATASOURCE_STATUS}))
    plugins = crds.kubectl("get", "-n", namespace, "gpl").stdout.splitlines()
    assert plugins[0].split() == ["NAME", "PLUGIN", "ID", "VERSION", "MODE", "READY",
                                  "SIGNATURE", "PHASE", "AGE"]
    assert plugins[1].split()[:7] == ["p", "myorg-example-datasource", "1.2.4", "Pod", "1",
                                      "valid", "Running"]
    datasources = crds.kubectl("get", "-n", namespace, "dsi").stdout.splitlines()
    assert datasources[0].split() == ["NAME", "UID", "PLUGIN", "HEALTH", "AGE"]
    assert datasources[1].split()[:4] == ["d", "my-ds_1", "p", "ERROR"]
    both = crds.kubectl("get", "-n", namespace, "plugin-operator", "-o", "name").stdout.split()
    assert sorted(both) == ["datasourceinstance.plugin-operator.dev/d",
                            "plugin.plugin-operator.dev/p"]


@pytest.mark.parametrize(("field", "expected"), [
    ("plugin.spec.source", ["exactly one of url, configMapRef, image or catalog",
                            "configMapRef <Object>", "sha256 <string>", "url <string>",
                            "Expected SHA-256 of the archive"]),
    ("plugin.status.lastFailure", ["The most recent backend crash", "exitCode <integer>"]),
    ("datasourceinstance.spec.secureJsonDataFrom", ["decryptedSecureJsonData"]),
])
def test_kubectl_explain_reads_like_documentation(crds: ControlPlane, field: str,
                                                  expected: list[str]) -> None:
    out = crds.kubectl("explain", field).stdout
    flowing = " ".join(out.split())  # explain wraps and indents descriptions
    for text in expected:
        assert text in flowing, f"{text!r} not in:\n{out}"
