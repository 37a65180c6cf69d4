"""The alerting rules of deploy/prometheus/plugin-operator-rules.yaml: valid for Prometheus,
each proven by promtool to fire on its condition and not on the cases beside it, written
over metrics we export only, and each explained in docs/runbook.md."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from plugin_operator.controller import artifacts, metrics, plugins
from plugin_operator.gateway.metrics import GatewayMetrics
from plugin_operator.host.http import HostMetrics
from tests.unit.alerts.promtool import (
    RULE_TESTS,
    RULES_FILE,
    RUNBOOK,
    alerting_rules,
    load_rules,
    run_promtool,
)

# Imported for what they register in the operator's global registry.
OPERATOR_METRICS = (metrics, artifacts)

# Every alert the issue asks for, by the condition it names.
EXPECTED_ALERTS = {
    "PluginBackendCrashLooping",  # a crash-looping backend
    "PluginNotRunning",  # a Plugin stuck out of Running
    "PluginDataSourceUnhealthy",  # a datasource unhealthy
    "PluginGatewayErrorsHigh",  # gateway errors over budget
    "PluginGatewayLatencyHigh",  # gateway latency over budget
    "PluginOperatorDown",  # the operator not reconciling: not there at all,
    "PluginOperatorReconcileErrors",  # its passes failing,
    "PluginOperatorStalled",  # or no passes at all
    "PluginOperatorArtifactCacheFillingUp",  # the artifact cache filling up
}


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in alerting_rules(load_rules())}


def test_the_rules_are_the_ones_asked_for() -> None:
    assert set(_alerts()) == EXPECTED_ALERTS


def test_promtool_finds_the_rules_valid() -> None:
    result = run_promtool("check", "rules", RULES_FILE)
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_each_alert_fires_on_its_condition_and_not_otherwise() -> None:
    assert RULE_TESTS, "no *.test.yaml beside this module"
    result = run_promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def test_each_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def _exported_names() -> set[str]:
    """The series names our processes can export: the operator's (its global registry, with
    the artifact cache's gauges), the gateway's and the plugin hosts'."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",), "summary": ("_count", "_sum", "")}
    registries: list[CollectorRegistry] = [
        REGISTRY, GatewayMetrics().registry, HostMetrics().registry]
    return {family.name + suffix for registry in registries
            for family in registry.collect() for suffix in suffixes.get(family.type, ("",))}


def test_the_rules_use_only_metrics_we_export() -> None:
    exported = _exported_names()
    for name, rule in _alerts().items():
        used = set(re.findall(r"\bplugin_(?:operator|gateway)_[a-z0-9_]+", rule["expr"]))
        assert used, f"{name} uses none of our metrics"
        assert used <= exported, f"{name} uses metrics nobody exports: {used - exported}"


def _github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_each_alert_links_to_its_section_of_the_runbook(alert: str) -> None:
    rule = _alerts()[alert]
    url = rule["annotations"]["runbook_url"]
    assert url.endswith(f"/runbook#{alert.lower()}"), url
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", RUNBOOK.read_text(),
                               flags=re.MULTILINE | re.DOTALL))
    anchors = {_github_anchor(heading): body for heading, body in sections.items()}
    body = anchors.get(alert.lower())
    assert body is not None, f"docs/runbook.md has no '## {alert}' section"
    for part in ("Meaning", "Confirm", "Fix"):
        assert f"**{part}**" in body, f"the runbook's {alert} section has no {part} part"
    assert "kubectl" in body
    assert {"summary", "description"} <= set(rule["annotations"])
    assert rule["labels"]["severity"] in ("warning", "critical")


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_the_stalled_operator_alert_waits_longer_than_the_plugins_resync() -> None:
    """PluginOperatorStalled assumes every Running Plugin gets a pass every RESYNC_SECONDS:
    its window and its `for` must each outlast one resync, or a healthy operator (or one
    just restarted, whose first passes Prometheus never saw) would look stalled."""
    rule = _alerts()["PluginOperatorStalled"]
    [window] = re.findall(r'kind="Plugin"}\[(\w+)\]', rule["expr"])
    assert _seconds(window) > plugins.RESYNC_SECONDS
    assert _seconds(rule["for"]) > plugins.RESYNC_SECONDS
