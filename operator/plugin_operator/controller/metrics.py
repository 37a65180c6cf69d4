"""The operator's Prometheus metrics."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from plugin_operator.models.status import Phase

RECONCILES = Counter("plugin_operator_reconciles_total",
                     "Reconcile passes by kind of object and result.", ["kind", "result"])
RECONCILE_SECONDS = Histogram("plugin_operator_reconcile_duration_seconds",
                              "Duration of one reconcile pass.", ["kind"],
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BACKEND_RESTARTS = Counter("plugin_operator_backend_restarts_total",
                           "Backend restarts seen: container restarts and replaced pods.",
                           ["namespace", "plugin"])
HEALTH_CHECKS = Counter("plugin_operator_datasource_health_checks_total",
                        "CheckHealth calls by result.", ["status"])

PHASES = tuple(str(phase) for phase in Phase)
HEALTH = ("OK", "ERROR", "UNKNOWN")


class _LastSeen(Collector):
    """Gauges over the most recent status written for each object, so a deleted object
    simply stops counting.

    Besides the totals, one series per object (value 1, labelled with its phase or health)
    names the object, so that an alert can say which one is stuck; keys are
    ``"<namespace>/<name>"``.
    """

    def __init__(self) -> None:
        self.plugin_phases: dict[str, str] = {}
        self.datasource_health: dict[str, str] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phases = GaugeMetricFamily("plugin_operator_plugins", "Plugins by phase.",
                                   labels=["phase"])
        tally = Tally(self.plugin_phases.values())
        for phase in PHASES:
            phases.add_metric([phase], tally[phase])
        yield phases
        health = GaugeMetricFamily("plugin_operator_datasources",
                                   "DataSourceInstances by health status.", labels=["health"])
        tally = Tally(self.datasource_health.values())
        for status in HEALTH:
            health.add_metric([status], tally[status])
        yield health
        yield _per_object("plugin_operator_plugin_phase",
                          "1 for each Plugin, labelled with the phase its status shows.",
                          ["namespace", "plugin", "phase"], self.plugin_phases)
        yield _per_object("plugin_operator_datasource_health",
                          "1 for each DataSourceInstance, labelled with its health status.",
                          ["namespace", "datasource", "health"], self.datasource_health)


def _per_object(name: str, documentation: str, labels: list[str],
                values: dict[str, str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        namespace, _, object_name = key.partition("/")
        family.add_metric([namespace, object_name, value], 1)
    return family


LAST_SEEN = _LastSeen()
REGISTRY.register(LAST_SEEN)
