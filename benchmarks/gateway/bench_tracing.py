"""What tracing costs the gateway per query (issue 17, item 3).

Two measurements, in this process:

1. The tracing code a query runs (the request span, three step spans, one plugin call's
   span and metadata), timed alone in a loop: untraced (no exporter, no traceparent: the
   common case), traced without an exporter (a caller's traceparent passed on), and
   exported (spans recorded and handed to a batch processor whose exporter drops them).
2. Whole queries: ``POST /api/ds/query`` through an in-process gateway to a minimal gRPC
   plugin on loopback, CPU seconds of this process (gateway, plugin and client together)
   per query, with tracing off and in the same three modes, so (1) can be read against it.

    .venv/bin/python benchmarks/gateway/bench_tracing.py [--queries 3000] [--loops 200000]

Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from plugin_operator.gateway.tracing import Tracing  # noqa: E402
from plugin_operator.protocol.stubs import backend_pb2 as pb  # noqa: E402
from plugin_operator.protocol.stubs import backend_pb2_grpc  # noqa: E402
from tests.support.gateway_launcher import in_process_gateway  # noqa: E402

CALLER = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
PLAIN = {"Content-Type": "application/json"}
BODY = json.dumps({"queries": [{"refId": "A", "datasource": {"uid": "uid-1"}}],
                   "from": "now-1h", "to": "now"})


class Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _exporting() -> Tracing:
    provider = TracerProvider()
    # A queue that never fills: a full one drops spans before they cost their whole way.
    provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=1 << 21))
    return Tracing(provider)


MODES: dict[str, tuple[Callable[[], Tracing], dict[str, str]]] = {
    "untraced (no exporter, no traceparent)": (Tracing, {}),
    "caller's traceparent, no exporter": (Tracing, CALLER),
    "exporting, no traceparent": (_exporting, {}),
    "exporting, caller's traceparent": (_exporting, CALLER),
}


def code_alone(tracing: Tracing, headers: dict[str, str], loops: int) -> float:
    """Microseconds of the tracing calls one query makes."""
    request_headers = {**PLAIN, **headers}
    started = time.process_time()
    for _ in range(loops):
        traced = tracing.start_request("POST", "/api/ds/query", "/api/ds/query",
                                       request_headers)
        with tracing.span("admission.authenticate"):
            pass
        with tracing.span("datasources.resolve"):
            pass
        with tracing.span("admission.authorize"):
            pass
        with tracing.plugin_call("pluginv2.Data", "QueryData", "127.0.0.1:10000", "p"):
            pass
        if traced is not None:
            traced.finish(200, {"plugin_id": "p", "datasource_uid": "u"})
    return (time.process_time() - started) / loops * 1e6


class Plugin(backend_pb2_grpc.DataServicer):
    async def QueryData(self, request: pb.QueryDataRequest,  # noqa: N802 - gRPC's name
                        context: Any) -> pb.QueryDataResponse:
        reply = pb.QueryDataResponse()
        reply.responses["A"].status = 200
        return reply


async def whole_queries(tracing: Tracing, headers: dict[str, str], queries: int,
                        work: Path) -> float:
    """CPU microseconds of this process per query, after a warm-up."""
    try:
        async with in_process_gateway(Plugin(), work, tracing) as client:
            async def one() -> None:
                async with client.post("/api/ds/query", data=BODY,
                                       headers={**PLAIN, **headers}) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

            for _ in range(200):
                await one()
            started = time.process_time()
            for _ in range(queries):
                await one()
            return (time.process_time() - started) / queries * 1e6
    finally:
        tracing.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--loops", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    alone: dict[str, float] = {}
    whole: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        # Round-robin over the modes, best of the rounds: a busy machine slows every mode
        # alike instead of the one that happened to run during the disturbance.
        for _ in range(args.rounds):
            for mode, (make, headers) in MODES.items():
                alone[mode] = min(alone.get(mode, float("inf")),
                                  code_alone(make(), headers, args.loops))
                whole[mode] = min(whole.get(mode, float("inf")), asyncio.run(
                    whole_queries(make(), headers, args.queries, Path(work))))
    print(f"{'mode':42} {'tracing code, us':>17} {'whole query, us CPU':>20}")
    for mode in MODES:
        print(f"{mode:42} {alone[mode]:17.2f} {whole[mode]:20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
