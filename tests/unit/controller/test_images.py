"""Plugins delivered as images: the unpack pod's manifest, how its progress is read, and
the desk that accepts its upload."""

from __future__ import annotations

from typing import Any

import pytest

from plugin_operator.controller.artifacts import Upload, UploadDesk
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.images import UnpackProgress, image_origin, observe_unpack
from plugin_operator.controller.podspec import (
    COPY_TREE,
    PluginRef,
    image_source_hash,
    unpack_pod,
)
from plugin_operator.models import naming
from plugin_operator.models.resources import ImageSource

CONFIG = OperatorConfig(image="plugin-operator.dev/plugin-operator:1.0.0",
                        artifacts_url="http://operator.system.svc:8081")
REF = PluginRef("plugins", "clickhouse", "uid-1")
SOURCE = ImageSource("registry.example/plugins/clickhouse@sha256:" + "b" * 64, "/dist",
                     "IfNotPresent")


def test_unpack_pod_copies_with_our_tool_and_uploads_with_its_token() -> None:
    pod = unpack_pod(REF, SOURCE, image_source_hash(SOURCE, 3), "tok", CONFIG)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == f"clickhouse-unpack-{image_source_hash(SOURCE, 3)[:10]}"
    assert meta["annotations"][naming.ANNOTATION_UPLOAD_TOKEN] == "tok"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    # Not a backend: Services, the gateway and the pod planner select LABEL_PLUGIN.
    assert naming.LABEL_PLUGIN not in meta["labels"]
    assert meta["labels"][naming.LABEL_UNPACKS] == "clickhouse"
    tools, copy = spec["initContainers"]
    assert tools["image"] == CONFIG.image
    assert tools["command"] == [COPY_TREE, COPY_TREE, "/tools/copy-tree"]
    assert copy["image"] == SOURCE.reference
    assert copy["imagePullPolicy"] == "IfNotPresent"
    assert copy["command"] == ["/tools/copy-tree", "/dist", "/work/plugin"]
    (upload,) = spec["containers"]
    assert upload["args"] == ["pack", "/work/plugin", "--upload",
                              "http://operator.system.svc:8081/uploads/tok"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_one_unpack_per_source_and_generation() -> None:
    assert image_source_hash(SOURCE, 3) == image_source_hash(SOURCE, 3)
    assert image_source_hash(SOURCE, 3) != image_source_hash(SOURCE, 4)
    other = ImageSource(SOURCE.reference, "/plugin", "IfNotPresent")
    assert image_source_hash(SOURCE, 3) != image_source_hash(other, 3)
    assert image_origin(SOURCE) == {"image": SOURCE.reference, "imagePath": "/dist"}


def _pod(phase: str, **statuses: Any) -> dict[str, Any]:
    return {"status": {"phase": phase, **statuses}}


@pytest.mark.parametrize(("pod", "progress", "detail"), [
    (_pod("Pending"), UnpackProgress.RUNNING, ""),
    (_pod("Succeeded"), UnpackProgress.SUCCEEDED, ""),
    (_pod("Pending", initContainerStatuses=[
        {"name": "copy-tools", "state": {"terminated": {"exitCode": 0}}},
        {"name": "copy-plugin", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]),
     UnpackProgress.PULL_FAILING, "ImagePullBackOff: Back-off pulling image \"x\""),
    (_pod("Failed", initContainerStatuses=[
        {"name": "copy-tools", "state": {"terminated": {"exitCode": 0}}},
        {"name": "copy-plugin", "state": {"terminated": {
            "exitCode": 1, "message": "copy-tree: /dist does not exist in this image"}}}]),
     UnpackProgress.FAILED,
     "container copy-plugin exited with code 1: copy-tree: /dist does not exist in this image"),
    (_pod("Failed", reason="DeadlineExceeded", message="Pod was active too long"),
     UnpackProgress.FAILED, "Pod was active too long"),
])
def test_unpack_progress_is_read_from_the_pod(pod: dict[str, Any], progress: UnpackProgress,
                                              detail: str) -> None:
    observed = observe_unpack(pod)
    assert (observed.progress, observed.detail) == (progress, detail)


def test_the_desk_takes_each_expected_upload_once_and_tells_its_owner() -> None:
    heard: list[str] = []
    desk: UploadDesk[str] = UploadDesk(on_arrival=heard.append)
    token = desk.expect("plugins/clickhouse")
    assert desk.knows(token)
    assert desk.arrived(token) is None
    assert not desk.receive("forged", Upload("c" * 64, 1))
    assert desk.receive(token, Upload("c" * 64, 10))
    assert not desk.receive(token, Upload("d" * 64, 10))  # single use
    assert desk.arrived(token) == Upload("c" * 64, 10)
    assert heard == ["plugins/clickhouse"]
    desk.close(token)
    assert not desk.knows(token)
    assert desk.arrived(token) is None
    assert desk.expect("x") != desk.expect("x")
