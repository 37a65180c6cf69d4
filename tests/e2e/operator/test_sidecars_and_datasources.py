"""Sidecar mode into a Deployment of the test's own, DataSourceInstances health-checked by the
operator against real backends, and deletion that leaves nothing of ours behind."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.e2e.kube import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY
from tests.e2e.operator.conftest import (
    API_VERSION,
    LABEL_PLUGIN,
    Plugins,
    SignedArchives,
    plugin_manifest,
)

WORKLOAD = "workload"
SIDECARS_ANNOTATION = "plugin-operator.dev/sidecars"


def _workload() -> dict[str, Any]:
    """A Deployment of the test's own that stays up doing nothing (coreutils' sleep)."""
    labels = {"app": WORKLOAD}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": WORKLOAD},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": RESTRICTED_POD_SECURITY,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "{image}",
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "infinity"],
                                "securityContext": RESTRICTED_CONTAINER_SECURITY}]}}}}


def _apply_workload(plugins: Plugins) -> None:
    manifest = json.loads(json.dumps(_workload()).replace("{image}", plugins.cluster.image))
    plugins.apply(manifest)


def _template_containers(plugins: Plugins) -> list[str]:
    template = plugins.get("deployment", WORKLOAD)["spec"]["template"]["spec"]
    return [c["name"] for c in template.get("initContainers", []) + template["containers"]]


def _workload_pods(plugins: Plugins) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = plugins.get("pods", "-l", f"app={WORKLOAD}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _sidecar_ready(plugins: Plugins, container: str) -> bool:
    pods = _workload_pods(plugins)
    return len(pods) == 1 and any(s["name"] == container and s["ready"] for s in
                                  (pods[0].get("status") or {}).get("containerStatuses") or [])


def test_sidecar_joins_the_workload_and_leaves_with_the_plugin(
        plugins: Plugins, signed_archives: SignedArchives) -> None:
    _apply_workload(plugins)
    try:
        plugins.archive_configmap("sidecar-archive", signed_archives.python_v1)
        plugins.apply(plugin_manifest(
            "sidecar", configmap="sidecar-archive", mode="Sidecar",
            sidecar={"targetRef": {"kind": "Deployment", "name": WORKLOAD}}))
        plugins.wait_for("the sidecar in the pod template",
                         lambda: "plugin-sidecar" in _template_containers(plugins))
        assert "fetch-sidecar" in _template_containers(plugins)
        plugins.wait_for("the sidecar container Ready in the workload's pod",
                         lambda: _sidecar_ready(plugins, "plugin-sidecar"))
        status = plugins.wait_phase("sidecar", "Running")
        assert status["sidecarTarget"] == f"Deployment {plugins.namespace}/{WORKLOAD}"
        assert plugins.pods("sidecar", alive_only=False) == [], \
            "a Sidecar-mode Plugin has no pods of its own"

        plugins.kubectl("delete", "plugin", "sidecar", "--wait=true", "--timeout=120s")
        containers = _template_containers(plugins)
        assert containers == ["main"], \
            f"the sidecar stayed in the pod template after the Plugin went: {containers}"
        plugins.wait_for("the workload's pods without the sidecar", lambda: all(
            [c["name"] for c in p["spec"]["containers"]] == ["main"]
            for p in _workload_pods(plugins)) and _workload_pods(plugins))
    finally:
        plugins.kubectl("delete", "deployment", WORKLOAD, "--wait=false", check=False)


def _secret(name: str, **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


def _datasource(name: str, secret: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DataSourceInstance", "metadata": {"name": name},
            "spec": {"pluginRef": {"name": "testdata"}, "uid": f"{name}-uid",
                     "jsonData": {"endpoint": "https://metrics.example.invalid"},
                     "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {"name": secret,
                                                                        "key": "apiKey"}}},
                     "healthCheck": {"interval": "10s"}}}


def _healthy(plugins: Plugins, name: str) -> tuple[str | None, dict[str, Any]]:
    status = plugins.status("datasourceinstance", name)
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    return conditions.get("Healthy", {}).get("status"), status


def test_datasources_with_good_and_bad_secrets(
        plugins: Plugins, signed_archives: SignedArchives) -> None:
    plugins.archive_configmap("testdata-archive", signed_archives.python_v1)
    plugins.apply(plugin_manifest("testdata", configmap="testdata-archive"),
                  _secret("good-creds", apiKey="a-real-key"), _secret("bad-creds", apiKey=""),
                  _datasource("good", "good-creds"), _datasource("bad", "bad-creds"),
                  _datasource("missing", "no-such-secret"))
    plugins.wait_phase("testdata", "Running")

    _, good = plugins.wait_for("good: Healthy True",
                               lambda: (h := _healthy(plugins, "good"))[0] == "True" and h)
    assert good["health"]["status"] == "OK"
    assert good["health"]["details"] == {"endpoint": "https://metrics.example.invalid",
                                         "keyLength": len("a-real-key")}

    _, bad = plugins.wait_for("bad: Healthy False",
                              lambda: (h := _healthy(plugins, "bad"))[0] == "False" and h)
    assert bad["health"] == {**bad["health"], "status": "ERROR",
                             "message": "secure setting apiKey is missing"}

    _, missing = plugins.wait_for("missing: Healthy False",
                                  lambda: (h := _healthy(plugins, "missing"))[0] == "False"
                                  and h)
    healthy = {c["type"]: c for c in missing["conditions"]}["Healthy"]
    assert healthy["reason"] == "SecretNotFound"
    assert f"Secret {plugins.namespace}/no-such-secret, which does not exist" in \
        healthy["message"]

    # The fixed Secret makes the broken one healthy: Secrets are watched, not polled.
    plugins.apply(_secret("bad-creds", apiKey="now-set"))
    plugins.wait_for("bad: Healthy True after the Secret was fixed",
                     lambda: _healthy(plugins, "bad")[0] == "True")


def test_deleting_everything_leaves_nothing_behind(
        plugins: Plugins, signed_archives: SignedArchives) -> None:
    _apply_workload(plugins)
    try:
        plugins.archive_configmap("all-archive", signed_archives.python_v1)
        plugins.apply(
            plugin_manifest("pods", configmap="all-archive", replicas=2),
            plugin_manifest("inside", configmap="all-archive", mode="Sidecar",
                            sidecar={"targetRef": {"kind": "Deployment", "name": WORKLOAD}}),
            _secret("creds", apiKey="k"), _datasource("ds", "creds") | {
                "spec": {**_datasource("ds", "creds")["spec"], "pluginRef": {"name": "pods"}}})
        plugins.wait_phase("pods", "Running")
        plugins.wait_phase("inside", "Running")
        plugins.wait_for("the DataSourceInstance healthy",
                         lambda: _healthy(plugins, "ds")[0] == "True")

        plugins.delete_everything()

        def leftovers() -> list[str]:
            found = plugins.get("pods,services,plugins,datasourceinstances", "-l", LABEL_PLUGIN)
            names = [f"{o['kind']}/{o['metadata']['name']}" for o in found["items"]]
            names += [f"{o['kind']}/{o['metadata']['name']}" for o in
                      plugins.get("plugins,datasourceinstances")["items"]]
            if any("plugin-inside" in c for c in _template_containers(plugins)):
                names.append(f"sidecar in Deployment/{WORKLOAD}")
            return names

        plugins.wait_for("nothing of ours left", lambda: not leftovers() or None,
                         timeout_s=120)
        annotation = plugins.get("deployment", WORKLOAD)["spec"]["template"]["metadata"].get(
            "annotations", {}).get(SIDECARS_ANNOTATION, "{}")
        assert json.loads(annotation) == {}
    finally:
        plugins.kubectl("delete", "deployment", WORKLOAD, "--wait=false", check=False)
