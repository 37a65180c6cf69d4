"""Plugins delivered as images, on a real apiserver.

Without a kubelet the unpack pod never runs; the tests play its part: the kubelet's status
reports, and the upload its last container makes (our real ``pack`` command).
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.package.archive import extract_archive
from tests.integration.controller.conftest import (
    CLI,
    TESTDATA_ID,
    OperatorProcess,
    archive_configmap,
    plugin_object,
)
from tests.support.samples import SignedSample

pytestmark = pytest.mark.integration

IMAGE = "registry.example/plugins/testdata@sha256:" + "e" * 64
UNPACKS = "plugin-operator.dev/unpacks"


def image_plugin(name: str, path: str = "/plugin") -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name},
            "spec": {"pluginId": TESTDATA_ID, "version": "0.1.0",
                     "source": {"image": {"reference": IMAGE, "path": path}},
                     "signature": {"policy": "RequireValid"}, "replicas": 1}}


def unpack_pods(op: OperatorProcess, plugin: str) -> list[dict[str, Any]]:
    data = op.plane.get_json("-n", op.namespace, "pods", "-l", f"{UNPACKS}={plugin}")
    return [p for p in data["items"]  # type: ignore[index]
            if not p["metadata"].get("deletionTimestamp")]


def the_unpack_pod(op: OperatorProcess, plugin: str) -> dict[str, Any]:
    pods: list[dict[str, Any]] = op.wait_for(
        f"the unpack pod of {plugin}", lambda: unpack_pods(op, plugin))
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def upload_url(pod: dict[str, Any]) -> str:
    args: list[str] = pod["spec"]["containers"][0]["args"]
    return args[args.index("--upload") + 1]


def report_pod(op: OperatorProcess, pod: str, status: dict[str, Any]) -> None:
    op.kubectl("patch", "pod", pod, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))


def phase_and_message(op: OperatorProcess, plugin: str) -> tuple[str, str]:
    status = op.status("plugin", plugin)
    return str(status.get("phase", "")), str(status.get("message", ""))


def test_an_image_is_unpacked_uploaded_verified_and_run(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        tmp_path: Path) -> None:
    operator.apply(image_plugin("from-image"))
    pod = the_unpack_pod(operator, "from-image")
    assert pod["spec"]["initContainers"][1]["image"] == IMAGE
    assert operator.pods("from-image") == []  # no backend before the package is verified
    operator.wait_for("phase Verifying", lambda: phase_and_message(operator, "from-image")[0]
                      == "Verifying")
    assert IMAGE in phase_and_message(operator, "from-image")[1]

    # A token that the operator did not hand out is refused.
    forged = upload_url(pod).rsplit("/", 1)[0] + "/forged"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(forged, data=b"x", method="PUT"),
                               timeout=10)
    assert refused.value.code == 403

    # The pod's last container: pack the plugin folder copied out of the image, upload it.
    folder = extract_archive(signed_testdata_python.archive, tmp_path / "plugin")
    packed = subprocess.run([str(CLI), "pack", str(folder), "--upload", upload_url(pod)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert packed.returncode == 0, packed.stderr

    operator.wait_for("a backend pod", lambda: operator.pods("from-image"))
    status = operator.wait_for("status Starting", lambda: (
        s := operator.status("plugin", "from-image")).get("phase") == "Starting" and s)
    assert status["signature"]["status"] == "valid"
    assert status["artifact"]["image"] == IMAGE
    assert status["artifact"]["imagePath"] == "/plugin"
    operator.wait_for("the finished unpack pod removed",
                      lambda: not unpack_pods(operator, "from-image"))
    # Reconciled again later, the recorded artifact is reused: no new unpack pod.
    operator.apply(image_plugin("from-image") | {"spec": {**image_plugin("from-image")["spec"],
                                                          "replicas": 2}})
    operator.wait_for("two backend pods", lambda: len(operator.pods("from-image")) == 2)
    assert not unpack_pods(operator, "from-image")

    # Moved to a ConfigMap, its status forgets the image at every depth (a merge patch of
    # the new status alone would keep artifact.image and artifact.imagePath).
    archive_configmap(operator, "from-image-cm", signed_testdata_python.archive)
    operator.apply(plugin_object("from-image", "from-image-cm", replicas=2))
    moved = operator.wait_for("the image forgotten", lambda: (
        s := operator.status("plugin", "from-image")).get("observedGeneration") == 3
        and "image" not in s["artifact"] and s)
    assert "imagePath" not in moved["artifact"]


def test_pull_failures_wait_and_copy_failures_reject(operator: OperatorProcess) -> None:
    operator.apply(image_plugin("unpullable"))
    pod = the_unpack_pod(operator, "unpullable")["metadata"]["name"]
    report_pod(operator, pod, {"phase": "Pending", "initContainerStatuses": [
        {"name": "copy-tools", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "copy-plugin", "image": IMAGE, "imageID": "", "ready": False,
         "restartCount": 0, "state": {"waiting": {
             "reason": "ErrImagePull", "message": "failed to resolve reference: not found"}}}]})
    _, message = operator.wait_for("phase Pending", lambda: (
        pm := phase_and_message(operator, "unpullable"))[0] == "Pending" and pm)
    assert f"cannot pull {IMAGE}: ErrImagePull: failed to resolve reference" in message

    operator.apply(image_plugin("no-such-path", path="/nowhere"))
    pod = the_unpack_pod(operator, "no-such-path")["metadata"]["name"]
    report_pod(operator, pod, {"phase": "Failed", "initContainerStatuses": [
        {"name": "copy-plugin", "image": IMAGE, "imageID": "", "ready": False,
         "restartCount": 0, "state": {"terminated": {
             "exitCode": 1, "reason": "Error",
             "message": "copy-tree: /nowhere does not exist in this image; set "
                        "spec.source.image.path to the folder that holds plugin.json"}}}]})
    _, message = operator.wait_for("phase Rejected", lambda: (
        pm := phase_and_message(operator, "no-such-path"))[0] == "Rejected" and pm)
    assert message.startswith("[imageUnpackFailed]")
    assert "/nowhere does not exist in this image" in message
    assert f"delete pod {pod}" in message
    assert operator.pods("no-such-path") == []


def test_a_restarted_operator_replaces_unpack_pods_it_cannot_hear_from(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        tmp_path: Path) -> None:
    operator.apply(image_plugin("restarted"))
    before = the_unpack_pod(operator, "restarted")
    operator.stop(signal.SIGKILL)
    operator.start()
    after = operator.wait_for("a new unpack pod", lambda: [
        p for p in unpack_pods(operator, "restarted")
        if p["metadata"]["uid"] != before["metadata"]["uid"]])
    assert after[0]["metadata"]["name"] == before["metadata"]["name"]

    # The old pod's token died with the first operator; the new one is honoured.
    folder = extract_archive(signed_testdata_python.archive, tmp_path / "plugin")
    stale = subprocess.run([str(CLI), "pack", str(folder), "--upload", upload_url(before),
                            "--retry-seconds", "0"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert stale.returncode == 1
    assert "HTTP 403" in stale.stderr
    fresh = subprocess.run([str(CLI), "pack", str(folder), "--upload", upload_url(after[0])],
                           capture_output=True, text=True, timeout=60, check=False)
    assert fresh.returncode == 0, fresh.stderr
    operator.wait_for("a backend pod", lambda: operator.pods("restarted"))


def test_a_rejected_image_is_not_unpacked_again(
        operator: OperatorProcess, signed_testdata_python: SignedSample,
        tmp_path: Path) -> None:
    operator.apply(image_plugin("modified"))
    pod = the_unpack_pod(operator, "modified")
    folder = extract_archive(signed_testdata_python.archive, tmp_path / "plugin")
    (folder / "plugin.json").write_text((folder / "plugin.json").read_text() + "\n")
    packed = subprocess.run([str(CLI), "pack", str(folder), "--upload", upload_url(pod)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert packed.returncode == 0, packed.stderr
    _, message = operator.wait_for("phase Rejected", lambda: (
        pm := phase_and_message(operator, "modified"))[0] == "Rejected" and pm)
    assert message.startswith("[signatureModified]")
    assert operator.status("plugin", "modified")["artifact"]["image"] == IMAGE
    operator.wait_for("the unpack pod removed", lambda: not unpack_pods(operator, "modified"))
    # Passes after the rejection (the pod's deletion, a change of the Plugin that keeps its
    # source) reuse the recorded archive instead of starting another unpack.
    operator.kubectl("patch", "plugin", "modified", "--type=merge", "-p",
                     '{"spec": {"replicas": 2}}')
    generation = operator.get("plugin", "modified")["metadata"]["generation"]
    operator.wait_for("a pass over the changed Plugin", lambda: operator.status(
        "plugin", "modified").get("observedGeneration") == generation)
    assert not unpack_pods(operator, "modified")
    assert phase_and_message(operator, "modified")[0] == "Rejected"
