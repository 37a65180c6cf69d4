from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.chart.helm import Helm, Rendered, build_helm


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(build_helm())


Render = Callable[..., Rendered]


@pytest.fixture(scope="session")
def render(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Renders once per distinct values and options (tests only read the result)."""
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
        key = json.dumps([values, kwargs], sort_keys=True, default=list)
        if key not in cache:
            cache[key] = helm.render(values, tmp=tmp_path_factory.mktemp("render"), **kwargs)
        return cache[key]
    return _render
