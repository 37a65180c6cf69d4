"""Traces: W3C trace context from the caller, through the gateway's own spans, to the plugin.

Grafana hands trace context to a plugin in the call's gRPC metadata (``traceparent`` and
``tracestate``, written by the OpenTelemetry stats handler of its plugin client), not in the
request's ``headers`` map, and the Go SDK's server reads it there (docs/observability.md);
the gateway does the same.

A request is *traced* when the gateway exports spans (an OTLP endpoint is configured), or
when its caller sent a valid ``traceparent``: then, with nothing to export to, the caller's
context still reaches the plugin, through spans that record nothing. Any other request costs
one header lookup here: every helper below answers a shared no-op unless the request being
served is traced (a context variable says so).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
# Probes and scrapes: a span every few seconds per replica that nobody asked for.
UNTRACED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
SERVICE_NAME = "plugin-operator-gateway"
INSTRUMENTATION = "plugin_operator.gateway"

# gRPC metadata as grpc.aio takes it.
Metadata = tuple[tuple[str, str], ...]

_PROPAGATOR = TraceContextTextMapPropagator()
# Whether the request this task serves is traced; tasks started for it inherit the value.
_TRACED: ContextVar[bool] = ContextVar("plugin_operator_gateway_traced", default=False)
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()


def otlp_url(endpoint: str) -> str:
    """The exporter's URL for ``endpoint``: ``host:port`` (how Grafana and its plugins name
    the collector, always spoken to in plaintext) becomes ``http://host:port``; an
    ``http://`` or ``https://`` URL (``OTEL_EXPORTER_OTLP_ENDPOINT``'s form) stays as it is."""
    endpoint = endpoint.strip()
    if not endpoint or "://" in endpoint:
        return endpoint
    return f"http://{endpoint}"


@dataclass(frozen=True)
class TracingConfig:
    otlp_endpoint: str = ""  # empty: nothing is exported
    service_instance: str = ""  # the gateway's pod, to tell replicas apart


class RequestTrace:
    """The server span of one traced request, current until :meth:`finish`."""

    __slots__ = ("_context_token", "_traced_token", "span")

    def __init__(self, span: Span, context_token: Token[otel_context.Context],
                 traced_token: Token[bool]) -> None:
        self.span = span
        self._context_token = context_token
        self._traced_token = traced_token

    def finish(self, status: int, attributes: Mapping[str, str]) -> None:
        span = self.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            for key, value in attributes.items():
                if value:
                    span.set_attribute(key, value)
            if status >= 500:  # a 4xx is the caller's doing, not a failure of ours
                span.set_status(StatusCode.ERROR)
        span.end()
        otel_context.detach(self._context_token)
        _TRACED.reset(self._traced_token)


class Tracing:
    """The gateway's spans. ``provider`` None: nothing is exported, and only requests that
    arrive with a trace context are traced (to pass that context on)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.exporting = provider is not None
        self._tracer = (provider or trace.NoOpTracerProvider()).get_tracer(INSTRUMENTATION)

    def start_request(self, method: str, route: str, path: str,
                      headers: Mapping[str, str]) -> RequestTrace | None:
        """The request's server span, child of the caller's ``traceparent`` when it sent a
        valid one; None when the request is not traced."""
        if (not self.exporting and TRACEPARENT not in headers) or route in UNTRACED_ROUTES:
            return None
        parent = _PROPAGATOR.extract(headers)
        if not self.exporting and not trace.get_current_span(parent).get_span_context().is_valid:
            return None  # a malformed traceparent is not passed on (W3C: start afresh)
        span = self._tracer.start_span(
            f"{method} {route}", context=parent, kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route,
                        "url.path": path})
        context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        return RequestTrace(span, context_token, _TRACED.set(True))

    @staticmethod
    def active() -> bool:
        """Whether the request being served is traced (its spans record or pass context)."""
        return _TRACED.get()

    def span(self, name: str, attributes: Mapping[str, str] | None = None
             ) -> contextlib.AbstractContextManager[Any]:
        """A child span of the request's for a step of its own (admission, resolution)."""
        if not _TRACED.get():
            return _NOTHING
        return self._tracer.start_as_current_span(name, attributes=attributes)

    def plugin_call(self, service: str, method: str, target: str, plugin_id: str
                    ) -> contextlib.AbstractContextManager[Metadata | None]:
        """A client span around one gRPC call (each attempt has its own), giving the
        metadata that carries its context to the plugin; None when not traced."""
        if not _TRACED.get():
            return _NOTHING
        return self._plugin_call(service, method, target, plugin_id)

    @contextlib.contextmanager
    def _plugin_call(self, service: str, method: str, target: str, plugin_id: str
                     ) -> Iterator[Metadata]:
        host, _, port = target.rpartition(":")
        attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.service": service,
                                      "rpc.method": method, "server.address": host,
                                      "plugin_id": plugin_id}
        if port.isdigit():
            attributes["server.port"] = int(port)
        with self._tracer.start_as_current_span(f"{service}/{method}", kind=SpanKind.CLIENT,
                                                attributes=attributes) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            try:
                yield tuple(carrier.items())
            except grpc.aio.AioRpcError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                raise
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])

    def shutdown(self) -> None:
        """Send what is still buffered; blocks for at most the exporter's timeout."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def exporting_provider(config: TracingConfig, version: str) -> TracerProvider:
    """An SDK provider that batches spans to the OTLP/gRPC endpoint. Sampling follows the
    standard ``OTEL_TRACES_SAMPLER`` (default: the caller's decision, else every trace);
    ``OTEL_SERVICE_NAME`` replaces our service name and ``OTEL_RESOURCE_ATTRIBUTES`` adds
    attributes. Imported only when used: a gateway that exports nothing never loads the SDK."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.version": version}
    if not os.environ.get("OTEL_SERVICE_NAME"):  # given attributes win over the environment
        attributes["service.name"] = SERVICE_NAME
    if config.service_instance:
        attributes["service.instance.id"] = config.service_instance
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=otlp_url(config.otlp_endpoint))))
    return provider
