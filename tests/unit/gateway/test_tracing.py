"""Trace context from the caller through the gateway into the plugin: the gateway's spans,
and what a plugin receives in its call's gRPC metadata (where Grafana puts it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from plugin_operator.gateway import cli
from plugin_operator.gateway.tracing import Tracing, otlp_url
from plugin_operator.protocol.stubs import backend_pb2 as pb
from plugin_operator.protocol.stubs import backend_pb2_grpc
from tests.support.gateway_launcher import in_process_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
STATE = "vendor=opaque,other=1"
QUERY = {"queries": [{"refId": "A", "datasource": {"uid": "uid-1"}}],
         "from": "now-1h", "to": "now"}


@dataclass
class FakePlugin(backend_pb2_grpc.DataServicer):
    """Answers QueryData with empty results and keeps what each call carried."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refuse: grpc.StatusCode | None = None

    async def QueryData(self, request: pb.QueryDataRequest,  # noqa: N802 - gRPC's name
                        context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryDataResponse:
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()
                              if isinstance(v, str)})
        self.headers.append(dict(request.headers))
        if self.refuse is not None:
            await context.abort(self.refuse, "no such query")
        reply = pb.QueryDataResponse()
        for query in request.queries:
            reply.responses[query.refId].status = 200
        return reply


@dataclass
class Setup:
    client: TestClient[Any, Any]
    plugin: FakePlugin
    spans: InMemorySpanExporter | None

    async def query(self, headers: dict[str, str] | None = None) -> None:
        response = await self.client.post("/api/ds/query", data=json.dumps(QUERY),
                                          headers={"Content-Type": "application/json",
                                                   **(headers or {})})
        assert response.status == 200, await response.text()

    def finished(self) -> list[ReadableSpan]:
        assert self.spans is not None
        return list(self.spans.get_finished_spans())


async def _setup(tmp_path: Path, exporting: bool) -> AsyncIterator[Setup]:
    plugin = FakePlugin()
    spans = None
    tracing = Tracing()
    if exporting:
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        tracing = Tracing(provider)
    async with in_process_gateway(plugin, tmp_path, tracing) as client:
        yield Setup(client, plugin, spans)


@pytest.fixture
async def exporting(tmp_path: Path) -> AsyncIterator[Setup]:
    async for setup in _setup(tmp_path, exporting=True):
        yield setup


@pytest.fixture
async def quiet(tmp_path: Path) -> AsyncIterator[Setup]:
    async for setup in _setup(tmp_path, exporting=False):
        yield setup


def _parts(traceparent: str) -> tuple[str, str, str]:
    version, trace_id, parent, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, parent, flags


async def test_the_plugin_joins_the_callers_trace_under_the_gateways_spans(
        exporting: Setup) -> None:
    await exporting.query({"traceparent": CALLER, "tracestate": STATE})
    spans = {s.name: s for s in exporting.finished()}
    assert set(spans) == {"POST /api/ds/query", "admission.authenticate",
                          "datasources.resolve", "admission.authorize",
                          "pluginv2.Data/QueryData"}
    server, call = spans["POST /api/ds/query"], spans["pluginv2.Data/QueryData"]
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {TRACE_ID}
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    assert server.parent.is_remote
    for name in ("admission.authenticate", "datasources.resolve", "admission.authorize",
                 "pluginv2.Data/QueryData"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == server.context.span_id, name
    assert call.kind is SpanKind.CLIENT
    assert call.attributes is not None
    assert server.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == 0
    assert call.attributes["plugin_id"] == "testdata"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["datasource_uid"] == "uid-1"

    # What the plugin got: the caller's trace, its parent the gateway's call span, and the
    # caller's tracestate; in metadata only, not as an http_ header.
    (metadata,) = exporting.plugin.metadata
    trace_id, parent, flags = _parts(metadata["traceparent"])
    assert (trace_id, parent, flags) == (TRACE_ID, format(call.context.span_id, "016x"), "01")
    assert metadata["tracestate"] == STATE
    assert not any(k.lower().endswith("traceparent") for k in exporting.plugin.headers[0])


async def test_without_a_caller_context_the_gateway_starts_the_trace(exporting: Setup
                                                                     ) -> None:
    await exporting.query()
    spans = {s.name: s for s in exporting.finished()}
    server, call = spans["POST /api/ds/query"], spans["pluginv2.Data/QueryData"]
    assert server.parent is None
    (metadata,) = exporting.plugin.metadata
    trace_id, parent, _ = _parts(metadata["traceparent"])
    assert trace_id == format(server.context.trace_id, "032x")
    assert parent == format(call.context.span_id, "016x")


async def test_probes_and_scrapes_make_no_spans(exporting: Setup) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await exporting.client.get(path, headers={"traceparent": CALLER})
        assert response.status == 200, path
    assert exporting.finished() == []


async def test_a_caller_that_says_not_sampled_is_obeyed(exporting: Setup) -> None:
    await exporting.query({"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-00"})
    assert exporting.finished() == []
    (metadata,) = exporting.plugin.metadata
    trace_id, _, flags = _parts(metadata["traceparent"])
    assert (trace_id, flags) == (TRACE_ID, "00")


async def test_failed_plugin_calls_are_marked_on_their_span(exporting: Setup) -> None:
    exporting.plugin.refuse = grpc.StatusCode.INVALID_ARGUMENT
    response = await exporting.client.post("/api/ds/query", data=json.dumps(QUERY))
    assert response.status >= 400
    call = next(s for s in exporting.finished() if s.name == "pluginv2.Data/QueryData")
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_with_nothing_to_export_the_callers_context_is_passed_on_unchanged(
        quiet: Setup) -> None:
    await quiet.query({"traceparent": CALLER, "tracestate": STATE})
    assert quiet.plugin.metadata[-1]["traceparent"] == CALLER
    assert quiet.plugin.metadata[-1]["tracestate"] == STATE
    # The next request, untraced, carries nothing: no context leaks between requests.
    await quiet.query()
    assert "traceparent" not in quiet.plugin.metadata[-1]


@pytest.mark.parametrize("traceparent", [
    "", "garbage", f"00-{'0' * 32}-{CALLER_SPAN}-01", f"00-{TRACE_ID}-{'0' * 16}-01",
    f"ff-{TRACE_ID}-{CALLER_SPAN}-01", f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",
])
async def test_with_nothing_to_export_a_malformed_context_is_not_passed_on(
        quiet: Setup, traceparent: str) -> None:
    await quiet.query({"traceparent": traceparent, "tracestate": STATE})
    assert "traceparent" not in quiet.plugin.metadata[-1]
    assert "tracestate" not in quiet.plugin.metadata[-1]


@pytest.mark.parametrize(("given", "url"), [
    ("collector:4317", "http://collector:4317"),
    (" tempo.monitoring.svc:4317 ", "http://tempo.monitoring.svc:4317"),
    ("http://collector:4317", "http://collector:4317"),
    ("https://collector.example:443", "https://collector.example:443"),
    ("", ""),
])
def test_otlp_endpoints_as_grafana_names_them_are_spoken_to_in_plaintext(given: str,
                                                                         url: str) -> None:
    assert otlp_url(given) == url


@pytest.mark.parametrize(("environ", "endpoint"), [
    ({}, ""),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://all:4317"}, "http://all:4317"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://all:4317",
      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317"}, "http://traces:4317"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://all:4317", "OTEL_SDK_DISABLED": "TRUE"}, ""),
])
def test_the_default_endpoint_follows_the_standard_variables(environ: dict[str, str],
                                                             endpoint: str) -> None:
    assert cli._otlp_default(environ) == endpoint
