"""The operator's gauges over the statuses it last wrote: totals, and one series per object
naming it (what the PluginNotRunning and PluginDataSourceUnhealthy alerts select on)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from plugin_operator.controller import metrics
from plugin_operator.models.resources import ObjectRef


@pytest.fixture
def last_seen() -> Iterator[metrics._LastSeen]:
    saved = (dict(metrics.LAST_SEEN.plugin_phases), dict(metrics.LAST_SEEN.datasource_health))
    metrics.LAST_SEEN.plugin_phases.clear()
    metrics.LAST_SEEN.datasource_health.clear()
    yield metrics.LAST_SEEN
    metrics.LAST_SEEN.plugin_phases.clear()
    metrics.LAST_SEEN.plugin_phases.update(saved[0])
    metrics.LAST_SEEN.datasource_health.clear()
    metrics.LAST_SEEN.datasource_health.update(saved[1])


def _series(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in REGISTRY.collect() for sample in family.samples
            if sample.name == name}


def test_each_plugin_is_one_series_labelled_with_its_phase(
        last_seen: metrics._LastSeen) -> None:
    # The writers key the dicts by str(ObjectRef).
    last_seen.plugin_phases[str(ObjectRef("team-a", "clock"))] = "Running"
    last_seen.plugin_phases[str(ObjectRef("team-b", "clock"))] = "Degraded"
    assert _series("plugin_operator_plugin_phase") == {
        (("namespace", "team-a"), ("phase", "Running"), ("plugin", "clock")): 1.0,
        (("namespace", "team-b"), ("phase", "Degraded"), ("plugin", "clock")): 1.0,
    }
    assert REGISTRY.get_sample_value("plugin_operator_plugins", {"phase": "Degraded"}) == 1
    del last_seen.plugin_phases["team-b/clock"]
    assert list(_series("plugin_operator_plugin_phase").values()) == [1.0]


def test_each_datasource_is_one_series_labelled_with_its_health(
        last_seen: metrics._LastSeen) -> None:
    last_seen.datasource_health[str(ObjectRef("plugins", "pg"))] = "ERROR"
    assert _series("plugin_operator_datasource_health") == {
        (("datasource", "pg"), ("health", "ERROR"), ("namespace", "plugins")): 1.0}
    last_seen.datasource_health["plugins/pg"] = "OK"
    assert _series("plugin_operator_datasource_health") == {
        (("datasource", "pg"), ("health", "OK"), ("namespace", "plugins")): 1.0}
