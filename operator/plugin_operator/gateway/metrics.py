"""The gateway's own Prometheus metrics: where a request's time goes, and what was refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Label values for requests that name no plugin (the gateway's own routes) and for those
# naming one the routing table does not know: names from URLs or bodies never become label
# values, so unauthenticated callers cannot add series (plugin and datasource labels hold
# only ids of known objects, "mixed" or these two).
NO_LABEL = ""
UNKNOWN = "unknown"

# Sub-millisecond buckets: the gateway's own overhead is meant to be that small.
_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "plugin_gateway_requests", "HTTP requests answered, by plugin, datasource uid, "
            "route and status", ["plugin", "datasource_uid", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "plugin_gateway_request_duration_seconds", "Whole HTTP request latency",
            ["route"], buckets=_BUCKETS, registry=r)
        self.upstream_seconds = Histogram(
            "plugin_gateway_upstream_duration_seconds", "Latency of gRPC calls to plugin "
            "backends (to the first message for streams)", ["plugin", "method"],
            buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("plugin_gateway_in_flight_requests",
                               "Requests in flight, by plugin", ["plugin"], registry=r)
        self.retries = Counter("plugin_gateway_retries",
                               "Idempotent calls retried on another endpoint",
                               ["plugin", "method"], registry=r)
        self.rejected = Counter("plugin_gateway_rejected_requests",
                                "Requests refused before reaching a plugin, by reason",
                                ["plugin", "reason"], registry=r)

        # labels() costs a lock and a tuple build per call; a request touches four children.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Gauge | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered (label sets are few: routes, plugins)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
