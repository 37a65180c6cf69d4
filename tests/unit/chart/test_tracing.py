"""The chart's tracing values: the gateway's exporter and what the operator tells plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugin_operator.controller.config import OperatorConfig, load_config
from plugin_operator.controller.tracing import TracingSettings
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import Rendered, RenderError

GATEWAY = "plugin-operator-gateway"


def _gateway_args(rendered: Rendered) -> list[str]:
    deployment = rendered.get("Deployment", GATEWAY)
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _operator_config(rendered: Rendered, tmp_path: Path) -> OperatorConfig:
    path = tmp_path / "config.yaml"
    path.write_text(rendered.get("ConfigMap", "plugin-operator-config")["data"]["config.yaml"])
    return load_config(path, environ={})


def test_off_by_default(render: Render, tmp_path: Path) -> None:
    rendered = render()
    assert "--otlp-endpoint" not in _gateway_args(rendered)
    assert _operator_config(rendered, tmp_path).tracing == TracingSettings()


@pytest.mark.parametrize(("endpoint", "address"), [
    ("tempo.monitoring.svc:4317", "tempo.monitoring.svc:4317"),
    ("http://tempo.monitoring.svc:4317/", "tempo.monitoring.svc:4317"),
    ("https://collector.example:443", "collector.example:443"),
])
def test_one_endpoint_for_the_gateway_and_the_plugins(render: Render, tmp_path: Path,
                                                      endpoint: str, address: str) -> None:
    rendered = render({"tracing": {"otlpEndpoint": endpoint,
                                   "sampler": {"type": "probabilistic", "param": 0.25}}})
    args = _gateway_args(rendered)
    assert args[args.index("--otlp-endpoint") + 1] == endpoint
    # The operator's own parser reads what the chart wrote, as plugins will get it.
    assert _operator_config(rendered, tmp_path).tracing == TracingSettings(
        address, "", "probabilistic", 0.25, "")


def test_plugins_can_be_left_out(render: Render, tmp_path: Path) -> None:
    rendered = render({"tracing": {"otlpEndpoint": "tempo:4317", "plugins": False}})
    assert "--otlp-endpoint" in _gateway_args(rendered)
    assert not _operator_config(rendered, tmp_path).tracing.enabled


@pytest.mark.parametrize("tracing", [
    {"otlpEndpoint": "tempo"},
    {"otlpEndpoint": "grpc://tempo:4317"},
    {"otlpEndpoint": "https://tempo"},
    {"propagation": "b3"},
    {"sampler": {"type": "always"}},
    {"sampler": {"param": -1}},
    {"sampler": {"remoteUrl": "sampler:5778"}},
    {"exporter": "otlp"},
])
def test_bad_values_are_refused_by_the_schema(render: Render, tracing: dict[str, Any]) -> None:
    with pytest.raises(RenderError, match="tracing"):
        render({"tracing": tracing})
