"""The operator's Prometheus metrics."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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

PHASES = ("Pending", "Verifying", "Rejected", "Starting", "Running", "Degraded")
HEALTH = ("OK", "ERROR", "UNKNOWN")


class _LastSeen(Collector):
    """Gauges over the most recent status written for each object, so a deleted object
    simply stops counting."""

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


LAST_SEEN = _LastSeen()
REGISTRY.register(LAST_SEEN)
