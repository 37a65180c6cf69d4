"""The hand-written Kubernetes client against the real kube-apiserver of the integration tests.

``control_plane``, ``crds`` and ``namespace`` come from tests/integration/conftest.py; this
adds a connected :class:`KubeApi` built the way the operator and the gateway build theirs
(``api_client`` reading the control plane's kubeconfig).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from plugin_operator.kube.client import api_client
from plugin_operator.kube.rest import KubeApi
from tests.support.kube import ControlPlane


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[KubeApi]:
    kube = await api_client(str(control_plane.kubeconfig))
    try:
        yield kube
    finally:
        await kube.close()
