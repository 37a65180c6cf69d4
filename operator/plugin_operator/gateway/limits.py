"""What one request may cost the gateway: body sizes per route, queries per request, the
data points a query may ask for, and the series and values one plugin call may return.

Every limit answers with Grafana's error shape and says which setting to change, so a
careless caller learns what to fix and a hostile one cannot make the gateway hold more
than a bounded amount of memory for it (docs/gateway.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from plugin_operator.protocol.models import FrameFormat

from .errors import GatewayError

KiB = 1 << 10
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    # POST /api/ds/query: a dashboard panel's request is a few KiB; this leaves room for
    # queries carrying inline data (CSV content, raw frames) without inviting abuse.
    query_body_bytes: int = 4 * MiB
    # Resource calls carry uploads; the body travels as one gRPC message and the Go SDK's
    # server accepts at most 16 MiB per message, with room left for the PluginContext.
    resource_body_bytes: int = 12 * MiB
    # Stream publishes carry one small JSON message (Grafana Live's messages are small).
    publish_body_bytes: int = 256 * KiB
    # All request bodies the gateway holds at once; beyond it callers get 503 + Retry-After.
    bodies_in_flight_bytes: int = 64 * MiB
    # A panel has a query per letter A-Z; mixed panels and scripted callers a few more.
    queries_per_request: int = 100
    # JSON objects and arrays in a query body, counted before parsing: parsing costs up to
    # ~25 times the body's size in Python objects, this keeps it to a few times.
    json_containers: int = 20_000
    # Per query; Grafana's SQL datasources stop at 1,000,000 rows ([dataproxy] row_limit).
    max_data_points: int = 1_000_000
    # Frames (Grafana's series) and values (rows x fields) one datasource call may return.
    series_per_call: int = 10_000
    values_per_call: int = 5_000_000

    def largest_body(self) -> int:
        return max(self.query_body_bytes, self.resource_body_bytes, self.publish_body_bytes)


def body_too_large(size: int, limit: int, route: str, setting: str) -> GatewayError:
    return GatewayError(
        413, f"Request body too large: {size} bytes where {route} accepts at most {limit} "
             f"bytes; send a smaller body (the gateway's {setting} sets this limit)",
        "request.tooLarge")


def _arrow_values(frame: bytes) -> int:
    """Rows x columns of an Arrow IPC file, read from its metadata (no data copied)."""
    reader = pa.ipc.open_file(pa.py_buffer(frame))
    rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return int(rows * len(reader.schema))


def _json_values(frame: bytes) -> int:
    """Values in a Grafana JSON frame, counted by separators after ``"data":`` (no parse).

    Exact for numbers; a string holding commas counts once per comma, which only errs on
    the side of the limit."""
    start = frame.rfind(b'"data":')
    if start < 0:
        return 0
    return frame.count(b",", start) + 1


def check_result_size(frames_by_query: Iterable[tuple[Sequence[bytes], FrameFormat]],
                      limits: Limits) -> None:
    """Refuse a call's results with more series or values than ``limits`` allow.

    Counting values is skipped while the encoded size alone proves them within the limit
    (every JSON value takes at least two bytes, every Arrow value at least one bit), so
    ordinary answers cost one pass over the frame lengths."""
    series = 0
    json_bytes = 0
    arrow_bytes = 0
    batches = list(frames_by_query)
    for frames, fmt in batches:
        series += len(frames)
        size = sum(len(f) for f in frames)
        if fmt is FrameFormat.ARROW:
            arrow_bytes += size
        else:
            json_bytes += size
    if series > limits.series_per_call:
        raise GatewayError(
            400, f"The datasource returned {series} series (data frames) for one call; the "
                 f"gateway passes at most {limits.series_per_call}: narrow the query (more "
                 "specific filters, fewer group-by labels) or raise --max-series-per-call",
            "query.tooManySeries")
    if json_bytes // 2 + arrow_bytes * 8 <= limits.values_per_call:
        return
    values = 0
    for frames, fmt in batches:
        count = _arrow_values if fmt is FrameFormat.ARROW else _json_values
        values += sum(count(f) for f in frames)
    if values > limits.values_per_call:
        raise GatewayError(
            400, f"The datasource returned about {values} values for one call; the gateway "
                 f"passes at most {limits.values_per_call}: shorten the time range, lower "
                 "maxDataPoints or aggregate in the query, or raise --max-values-per-call",
            "query.tooManyValues")
