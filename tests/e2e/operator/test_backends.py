"""Pod mode on the real cluster, through the chart-installed operator: signed Python and Go
samples run, crashed backends restart and are recorded, lost pods are replaced, a tampered
archive runs nothing, and a new version or config rolls the pods one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kube import KILL_PLUGIN
from tests.e2e.operator.conftest import (
    SAMPLE_GO_ID,
    ArchiveServer,
    Plugins,
    SignedArchives,
    backend_restarts,
    plugin_manifest,
    sha256_of,
)
from tests.support.samples import tamper

BACKEND_CONTAINER = "plugin"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _backend_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s["name"] == BACKEND_CONTAINER), {})


def _running_python(plugins: Plugins, archives: SignedArchives, name: str,
                    replicas: int = 1, **spec: Any) -> dict[str, Any]:
    plugins.archive_configmap(f"{name}-v1", archives.python_v1)
    plugins.apply(plugin_manifest(name, configmap=f"{name}-v1", replicas=replicas, **spec))
    return plugins.wait_phase(name, "Running")


def test_python_and_go_samples_run_as_ready_pods(
        plugins: Plugins, signed_archives: SignedArchives,
        archive_server: ArchiveServer) -> None:
    plugins.archive_configmap("python-archive", signed_archives.python_v1)
    go_url = archive_server.publish(signed_archives.go, "sample-go.zip")
    plugins.apply(
        plugin_manifest("python", configmap="python-archive"),
        plugin_manifest("go", plugin_id=SAMPLE_GO_ID, version="1.0.0", url=go_url,
                        sha256=sha256_of(signed_archives.go)))
    for name, executable in (("python", "gpx_testdata_python_linux_amd64"),
                             ("go", "gpx_sample_go_linux_amd64")):
        status = plugins.wait_phase(name, "Running")
        assert status["readyReplicas"] == 1
        assert status["signature"]["status"] == "valid"
        assert status["plugin"]["executable"] == executable
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions == {"SignatureValid": "True", "Registered": "True",
                              "GrafanaCompatible": "True", "BackendReady": "True"}
        (pod,) = plugins.pods(name)
        assert _ready(pod), f"Plugin {name} is Running but its pod is not Ready"
        assert pod["spec"]["automountServiceAccountToken"] is False
        service = plugins.get("service", status["serviceName"])
        assert service["spec"]["selector"]["plugin-operator.dev/plugin"] == name
        endpoints = plugins.get("endpoints", status["serviceName"])
        addresses = [a["ip"] for s in endpoints.get("subsets") or []
                     for a in s.get("addresses") or []]
        assert addresses == [pod["status"]["podIP"]]


def test_killed_backend_restarts_in_place_and_is_recorded(
        plugins: Plugins, signed_archives: SignedArchives) -> None:
    _running_python(plugins, signed_archives, "crashy")
    (pod,) = plugins.pods("crashy")
    name, before = pod["metadata"]["name"], int(_backend_status(pod)["restartCount"])
    killed = plugins.cluster.python(plugins.namespace, name, KILL_PLUGIN,
                                    "gpx_testdata_python", "testdata_plugin").stdout.split()
    assert killed, "no plugin process found in the backend container"

    def restarted_and_ready() -> dict[str, Any] | None:
        (current,) = plugins.pods("crashy")
        if current["metadata"]["uid"] != pod["metadata"]["uid"]:
            raise AssertionError("a crashed plugin is restarted in its pod; the pod must not "
                                 "be replaced")
        counted = backend_restarts(current) > before
        return current if counted and _ready(current) else None

    current = plugins.wait_for("the plugin restarted in place and Ready", restarted_and_ready)
    # The host restarted it inside the container: the kubelet saw no container restart.
    assert int(_backend_status(current).get("restartCount", 0)) == before
    status = plugins.wait_for(
        "status.restarts and lastFailure",
        lambda: (s := plugins.status("plugin", "crashy")).get("restarts", 0) >= 1
        and (s.get("lastFailure") or {}).get("pod") == name and s.get("phase") == "Running"
        and s)
    failure = status["lastFailure"]
    assert failure["exitCode"] != 0
    assert failure["message"], "lastFailure keeps the last lines the backend printed"
    assert failure["time"]
    plugins.wait_for("a BackendCrashed event", lambda: any(
        e.startswith("BackendCrashed:") and name in e for e in plugins.events("crashy")))


def test_deleted_pod_is_replaced(plugins: Plugins, signed_archives: SignedArchives) -> None:
    _running_python(plugins, signed_archives, "lost")
    (pod,) = plugins.pods("lost")
    plugins.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
    replacement = plugins.wait_for(
        "a Ready replacement pod",
        lambda: [p for p in plugins.pods("lost")
                 if p["metadata"]["uid"] != pod["metadata"]["uid"] and _ready(p)])
    assert len(replacement) == 1
    plugins.wait_for("one pod again", lambda: len(plugins.pods("lost", alive_only=False)) == 1)
    assert plugins.wait_phase("lost", "Running")["readyReplicas"] == 1


def test_tampered_archive_is_rejected_and_runs_nothing(
        plugins: Plugins, signed_archives: SignedArchives, tmp_path: Path) -> None:
    plugins.archive_configmap("tampered", tamper(signed_archives.python_v1,
                                                  tmp_path / "tampered.zip"))
    plugins.apply(plugin_manifest("tampered", configmap="tampered"))
    status = plugins.wait_phase("tampered", "Rejected")
    assert status["message"].startswith("[signatureModified]")
    plugins.wait_for("a Rejected event", lambda: any(
        e.startswith("Rejected: [signatureModified]") for e in plugins.events("tampered")))
    assert plugins.pods("tampered", alive_only=False) == []
    assert plugins.get_or_none("service", "plugin-tampered") is None


@pytest.mark.parametrize("change", ["version", "config"])
def test_change_rolls_pods_one_at_a_time(
        plugins: Plugins, signed_archives: SignedArchives, change: str) -> None:
    replicas = 2
    _running_python(plugins, signed_archives, "rolling", replicas=replicas)
    old = {p["metadata"]["name"] for p in plugins.pods("rolling")}
    assert len(old) == replicas
    if change == "version":
        plugins.archive_configmap("rolling-v2", signed_archives.python_v2)
        plugins.apply(plugin_manifest("rolling", configmap="rolling-v2", version="0.2.0",
                                      replicas=replicas))
    else:
        plugins.apply(plugin_manifest("rolling", configmap="rolling-v1", replicas=replicas,
                                      config={"greeting": "changed"}))

    snapshots: list[list[tuple[str, bool, bool]]] = []

    def rolled() -> bool:
        pods = plugins.pods("rolling", alive_only=False)
        snapshot = sorted((p["metadata"]["name"], _ready(p),
                           bool(p["metadata"].get("deletionTimestamp"))) for p in pods)
        snapshots.append(snapshot)
        serving_old = sum(1 for n, _, going in snapshot if n in old and not going)
        ready_new = sum(1 for n, ready, going in snapshot if n not in old and ready
                        and not going)
        starting_new = sum(1 for n, ready, going in snapshot if n not in old and not ready)
        assert serving_old + ready_new >= replicas, \
            f"an old pod went before a new one was Ready: {snapshot}"
        assert starting_new <= 1, f"more than one new pod at a time: {snapshot}"
        return ready_new == replicas and serving_old == 0 and len(snapshot) == replicas

    plugins.wait_for("only new, Ready pods", rolled, timeout_s=300, interval_s=0.2)
    assert any(any(n in old for n, _, _ in s) and any(n not in old for n, _, _ in s)
               for s in snapshots), "old and new pods never overlapped: not a rolling update"
    status = plugins.wait_phase("rolling", "Running")
    assert status["readyReplicas"] == replicas
    if change == "version":
        assert status["artifact"]["sha256"] == sha256_of(signed_archives.python_v2)
    plugins.wait_for("a RollingUpdate event", lambda: any(
        e.startswith("RollingUpdate:") for e in plugins.events("rolling")))


def test_a_plugin_delivered_as_an_image_is_unpacked_verified_and_run(
        plugins: Plugins, testdata_plugin_image: str) -> None:
    plugins.apply(plugin_manifest("from-image", image={"reference": testdata_plugin_image}),
                  plugin_manifest("wrong-path", image={"reference": testdata_plugin_image,
                                                       "path": "/nowhere"}))
    status = plugins.wait_phase("from-image", "Running")
    assert status["signature"]["status"] == "valid"
    assert status["artifact"]["image"] == testdata_plugin_image
    assert status["readyReplicas"] == 1
    # The static copy-tree ran inside an image that has nothing else, and said what is wrong.
    rejected = plugins.wait_phase("wrong-path", "Rejected")
    assert rejected["message"].startswith("[imageUnpackFailed]")
    assert "/nowhere does not exist in this image" in rejected["message"]
    assert plugins.pods("wrong-path") == []
    plugins.wait_for("the finished unpack pod removed", lambda: not plugins.get(
        "pods", "-l", "plugin-operator.dev/unpacks=from-image")["items"] or None)
