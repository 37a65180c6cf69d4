"""One query with a known traceparent through the chart's gateway to the Go sample: the
gateway's spans and the plugin's own (the Go SDK traces QueryData once the operator has told
it where to send spans) reach the test's OTLP receiver in the caller's trace, the plugin's
under the gateway's."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.e2e.operator.conftest import SAMPLE_GO_ID
from tests.e2e.traces.conftest import GO_UID, TracedSetup
from tests.support.wait import eventually

GATEWAY_SERVICE = "plugin-operator-gateway"
QUERY = {"from": "now-1h", "to": "now",
         "queries": [{"refId": "A", "datasource": {"uid": GO_UID}, "queryType": "randomWalk",
                      "maxDataPoints": 10}]}


def test_one_query_is_one_trace_from_the_caller_through_the_gateway_into_the_plugin(
        traced: TracedSetup) -> None:
    # The routing table and kube-proxy follow the objects a moment later: wait with a
    # query that has no traceparent of its own (the gateway starts a trace for it).
    eventually("the Go datasource answering through the gateway",
               lambda: traced.post("/api/ds/query", json.dumps(QUERY))["status"] == 200,
               timeout_s=120, interval_s=2, diagnostics=traced.plugins.diagnostics)

    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    answer = traced.post("/api/ds/query", json.dumps(QUERY),
                         json.dumps({"traceparent": f"00-{trace_id}-{caller_span}-01"}))
    assert answer["status"] == 200, answer

    def both_sides() -> dict[str, list[dict[str, str]]] | None:
        ours = [s for s in traced.received_spans() if s["trace_id"] == trace_id]
        by_service: dict[str, list[dict[str, str]]] = {}
        for span in ours:
            by_service.setdefault(span["service"], []).append(span)
        return by_service if {GATEWAY_SERVICE, SAMPLE_GO_ID} <= set(by_service) else None

    def receiver_log() -> str:
        spans: list[Any] = traced.received_spans()
        return f"spans received ({len(spans)}): {spans[-30:]}"

    spans = eventually(f"spans of trace {trace_id} from the gateway and the plugin",
                       both_sides, timeout_s=90, interval_s=2, diagnostics=receiver_log)
    gateway = {s["name"]: s for s in spans[GATEWAY_SERVICE]}
    # The gateway's request span continues the caller's; its steps are its children.
    assert gateway["POST /api/ds/query"]["parent"] == caller_span, gateway
    for step in ("admission.authenticate", "datasources.resolve", "admission.authorize",
                 "pluginv2.Data/QueryData"):
        assert gateway[step]["parent"] == gateway["POST /api/ds/query"]["span_id"], step
    # The plugin's spans hang under the gateway's call, as they would under Grafana's.
    plugin_parents = {s["parent"] for s in spans[SAMPLE_GO_ID]}
    assert gateway["pluginv2.Data/QueryData"]["span_id"] in plugin_parents, spans[SAMPLE_GO_ID]
