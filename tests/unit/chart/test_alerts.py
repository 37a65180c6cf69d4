"""The chart's PrometheusRule: made when the Prometheus Operator's API exists and the alerts
are on, its rules the ones of deploy/prometheus/plugin-operator-rules.yaml (one source: that
file is rendered from the chart by hack/gen-alert-rules.sh), its thresholds from values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.alerts.promtool import alerting_rules, load_rules, run_promtool
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import Manifest

MONITORING = "monitoring.coreos.com/v1"


def _rules(render: Render, values: dict[str, Any] | None = None,
           api_versions: tuple[str, ...] = (MONITORING,)) -> list[Manifest]:
    return render(values, api_versions=list(api_versions)).all("PrometheusRule")


def _by_alert(rule: Manifest) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in alerting_rules(rule["spec"])}


def test_the_rule_is_made_with_the_monitors(render: Render) -> None:
    [rule] = _rules(render, {"monitoring": {"prometheusOperator": {"labels": {
        "release": "kube-prometheus"}}}})
    assert rule["apiVersion"] == MONITORING
    assert rule["metadata"]["name"] == "plugin-operator"
    assert rule["metadata"]["namespace"] == "plugin-operator"
    # The labels a Prometheus selects monitors on select the rules too.
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"


@pytest.mark.parametrize(("values", "api_versions"), [
    ({"monitoring": {"alerts": {"enabled": False}}}, (MONITORING,)),
    ({"monitoring": {"prometheusOperator": {"enabled": False}}}, (MONITORING,)),
    (None, ()),
], ids=["alerts off", "prometheus operator off", "no monitoring API"])
def test_no_rule_when_off_or_without_the_api(render: Render, values: dict[str, Any] | None,
                                             api_versions: tuple[str, ...]) -> None:
    assert _rules(render, values, api_versions) == []


def test_the_plain_rules_file_is_the_charts_rules_with_the_defaults(render: Render) -> None:
    [rule] = _rules(render)
    assert rule["spec"] == load_rules(), (
        "deploy/prometheus/plugin-operator-rules.yaml differs from the chart's "
        "PrometheusRule: run hack/gen-alert-rules.sh")


def test_thresholds_severities_and_labels_come_from_values(render: Render,
                                                           tmp_path: Path) -> None:
    values = {"monitoring": {"alerts": {
        "runbookUrl": "https://wiki.example.com/plugin-operator",
        "labels": {"team": "platform", "severity": "ignored"},
        "backendCrashLooping": {"restarts": 5, "window": "1h"},
        "pluginNotRunning": {"for": "30m", "severity": "critical"},
        "gatewayErrors": {"ratio": 0.2, "minRequestsPerSecond": 1},
        "gatewayLatency": {"quantile": 0.95, "seconds": 2.5,
                           "excludeRoutes": "/api/(streams|live)/.*"},
        "operatorStalled": {"window": "20m"},
        "artifactCacheFillingUp": {"ratio": 0.5},
    }}}
    [rule] = _rules(render, values)
    alerts = _by_alert(rule)
    crash = alerts["PluginBackendCrashLooping"]
    assert crash["expr"] == "increase(plugin_operator_backend_restarts_total[1h]) >= 5"
    assert crash["labels"] == {"severity": "warning", "team": "platform"}
    assert crash["annotations"]["runbook_url"] == \
        "https://wiki.example.com/plugin-operator#pluginbackendcrashlooping"
    assert alerts["PluginNotRunning"]["for"] == "30m"
    assert alerts["PluginNotRunning"]["labels"]["severity"] == "critical"
    errors = alerts["PluginGatewayErrorsHigh"]["expr"]
    assert ") > 0.2\n" in errors
    assert errors.endswith("[5m])) > 1")
    latency = alerts["PluginGatewayLatencyHigh"]["expr"]
    assert latency.startswith("histogram_quantile(0.95,")
    assert ") > 2.5\n" in latency
    assert latency.count('route!~"/api/(streams|live)/.*"') == 2
    assert '{kind="Plugin"}[20m]' in alerts["PluginOperatorStalled"]["expr"]
    assert alerts["PluginOperatorArtifactCacheFillingUp"]["expr"].endswith("> 0.5")
    # What the values made is still a valid rules file.
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    result = run_promtool("check", "rules", rules_file)
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_the_operator_is_scraped_with_its_own_namespace_labels(render: Render) -> None:
    rendered = render(api_versions=[MONITORING])
    [operator_endpoint] = rendered.get("ServiceMonitor", "plugin-operator")["spec"]["endpoints"]
    assert operator_endpoint["honorLabels"] is True
    [gateway_endpoint] = rendered.get("ServiceMonitor",
                                      "plugin-operator-gateway")["spec"]["endpoints"]
    assert "honorLabels" not in gateway_endpoint
