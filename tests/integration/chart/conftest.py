from __future__ import annotations

import pytest

from tests.unit.chart.helm import Helm, build_helm


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(build_helm())
