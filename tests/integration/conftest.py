"""Fixtures for tests against a real kube-apiserver and etcd on loopback.

The control plane starts once per test session, only when a test asks for it, through
``hack/control-plane.sh`` (the same script a developer runs by hand), and is stopped and
deleted at the end. Each test gets a namespace of its own.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.front import front_in_environment
from tests.support.kube import CRDS, HACK, ControlPlane
from tests.support.samples import SignedSample, build_sample_go, package_testdata_python, sign

CRD_KINDS = ("plugin", "datasourceinstance")


def _kubectl_binary() -> Path:
    out = subprocess.run([str(HACK / "build-components.sh"), "kubectl"], capture_output=True,
                         text=True, check=True, timeout=3600).stdout
    return Path(out.strip().splitlines()[-1]) / "kubectl"


@pytest.fixture(scope="session", autouse=True)
def plugin_front() -> Iterator[Path]:
    """Every plugin host that integration tests start (through the launcher, the CLI or the
    operator's fixtures) serves through plugin-front, built once by hack/build-front.sh."""
    with front_in_environment() as path:
        yield path


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state = tmp_path_factory.mktemp("control-plane") / "state"
    started = subprocess.run([str(HACK / "control-plane.sh"), "start", str(state)],
                             capture_output=True, text=True, timeout=3600, check=False)
    try:
        if started.returncode != 0:
            pytest.fail(f"the test control plane did not start:\n{started.stderr}")
        plane = ControlPlane(Path(started.stdout.strip().splitlines()[-1]), _kubectl_binary())
        # Guard against a kubeconfig mix-up: these tests delete what they create, so they
        # must only ever talk to the throw-away apiserver started above.
        context = plane.kubectl("config", "current-context").stdout.strip()
        assert context == "plugin-operator-test", f"refusing to test against {context!r}"
        yield plane
    finally:
        subprocess.run([str(HACK / "control-plane.sh"), "stop", str(state)], timeout=120,
                       check=False)


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with our CRDs installed and Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/plugins.plugin-operator.dev",
                          "crd/datasourceinstances.plugin-operator.dev")
    # The OpenAPI document that kubectl explain reads is published a moment after the CRDs
    # are Established; wait for it so tests never see a half-installed API.
    deadline = time.monotonic() + 60
    while any(control_plane.kubectl("explain", f"{kind}.status.conditions",
                                    check=False).returncode for kind in CRD_KINDS):
        if time.monotonic() > deadline:
            pytest.fail("the CRDs never appeared in the apiserver's OpenAPI document")
        time.sleep(0.2)
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def signed_testdata_python(tmp_path_factory: pytest.TempPathFactory) -> SignedSample:
    """plugins/testdata-python packaged by its own script and signed with a fresh test key."""
    work = tmp_path_factory.mktemp("signed-sample")
    return sign(package_testdata_python(work), work)


@pytest.fixture(scope="session")
def signed_sample_go(tmp_path_factory: pytest.TempPathFactory) -> SignedSample:
    """plugins/sample-go built by hack/build-sample-go.sh (cached) and signed with a test key."""
    work = tmp_path_factory.mktemp("signed-sample-go")
    return sign(build_sample_go()["SAMPLE_GO_ZIP"], work)
