from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.chart.helm import Helm, Rendered, build_helm


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(build_helm())


Render = Callable[..., Rendered]


@pytest.fixture
def render(helm: Helm, tmp_path: Path) -> Render:
    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
        return helm.render(values, tmp=tmp_path, **kwargs)
    return _render
