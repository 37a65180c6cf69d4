"""TestData (Python): a sample datasource built with plugin_operator.sdk.

Queries (``queryType`` or the model's ``scenario``): ``random_walk`` (seriesCount series),
``table`` (every field type, nulls, NaN/Inf), ``error`` (a downstream error), ``slow``
(sleeps ``seconds``, stops when the call is cancelled) and ``chatty`` (prints ``megabytes``
of output to stdout and stderr). Resources: ``json``, ``stream`` (several chunks), ``echo``,
``whoami`` (the serving process's pid and host name).
Health needs ``jsonData.endpoint`` and the secure ``apiKey``; with ``jsonData.checkConnection``
it also opens a TCP connection to the endpoint and reports why that failed. RunStream emits counter
frames. The ``crash_after_queries`` setting (GF_PLUGIN_CRASH_AFTER_QUERIES, or jsonData
``crashAfterQueries``) makes the process exit with status 3 after that many queries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket
import sys
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter

from plugin_operator.protocol.frames import frame_to_json
from plugin_operator.sdk import (
    CallResourceRequest,
    CallResourceResponse,
    CheckHealthRequest,
    CheckHealthResult,
    DataChunk,
    DataQuery,
    DataResponse,
    ErrorSource,
    Field,
    FieldType,
    Frame,
    HealthStatus,
    InstanceManagedHandlers,
    PluginContext,
    QueryDataRequest,
    QueryDataResponse,
    StreamRequest,
    StreamResponse,
    StreamStatus,
    serve,
)

log = logging.getLogger("testdata")
QUERIES = Counter("testdata_queries", "Queries served, by scenario", ["scenario"])
INSTANCES = Counter("testdata_instances_created", "Datasource instances created")
_queries_served = 0


def _crash_after(ctx: PluginContext) -> int:
    settings = ctx.datasource_instance_settings
    from_json = settings.json().get("crashAfterQueries") if settings else None
    raw = from_json or os.environ.get("GF_PLUGIN_CRASH_AFTER_QUERIES") or 0
    return int(raw)


async def _connect_failure(endpoint: str) -> str:
    """Why a TCP connection to the endpoint's host and port fails ("" when it opens), in
    the words of the usual client libraries."""
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname or ""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    except socket.gaierror as exc:
        return f"dial tcp {host}: lookup {host}: name resolution failed: {exc.strerror}"
    except ConnectionRefusedError:
        return f"dial tcp {host}:{port}: connect: connection refused"
    except TimeoutError:
        return f"dial tcp {host}:{port}: i/o timeout"
    except (OSError, ValueError) as exc:
        return f"dial tcp {host}: {exc}"
    writer.close()
    return ""


def random_walk(query: DataQuery, series: int) -> list[Frame]:
    start, end = query.time_range.from_ms, query.time_range.to_ms
    points = max(1, min(query.max_data_points or 100, 10_000))
    step = max(1, (end - start) // points) if end > start else (query.interval_ms or 1000)
    times = [(start + i * step) * 1_000_000 for i in range(points)]
    frames = []
    rng = random.Random(json.dumps(query.model(), sort_keys=True))
    for index in range(series):
        value, values = rng.uniform(0, 100), []
        for _ in range(points):
            value += rng.uniform(-1, 1)
            values.append(value)
        frames.append(Frame(f"series-{index}", [
            Field.of("time", FieldType.TIME, times),
            Field.of("value", FieldType.FLOAT64, values, labels={"series": str(index)},
                     config={"unit": "percent"}),
        ], meta={"type": "timeseries-multi", "typeVersion": [0, 1]}))
    return frames


def table() -> Frame:
    return Frame("table", [
        Field.of("time", FieldType.TIME,
                 [1_700_000_000_000_000_001, None, 1_700_000_000_123_000_000], nullable=True),
        Field.of("name", FieldType.STRING, ["a", "b \"quoted\" ü", None], nullable=True),
        Field.of("count", FieldType.INT64, [1, -(2**62), 2**62]),
        Field.of("ratio", FieldType.FLOAT64, [math.nan, math.inf, -math.inf]),
        Field.of("small", FieldType.FLOAT32, [0.5, None, 1.25], nullable=True),
        Field.of("ok", FieldType.BOOL, [True, False, True]),
        Field.of("big", FieldType.UINT64, [0, 2**64 - 1, 7]),
        Field.of("doc", FieldType.JSON, [{"a": 1}, [1, 2], "x"]),
        Field.of("level", FieldType.ENUM, [0, 1, 2]),
    ], meta={"preferredVisualisationType": "table"})


class Datasource:
    """One configured datasource: built per settings version by the instance manager."""

    def __init__(self, ctx: PluginContext) -> None:
        INSTANCES.inc()
        self.settings = ctx.datasource_instance_settings
        self.crash_after = _crash_after(ctx)
        log.info("instance created", extra={"uid": self.settings.uid if self.settings else ""})

    def _count_query(self) -> None:
        global _queries_served
        _queries_served += 1
        if self.crash_after and _queries_served >= self.crash_after:
            sys.stderr.write(f"testdata: crashing on purpose after {_queries_served} "
                             "queries (crash_after_queries)\n")
            sys.stderr.flush()
            os._exit(3)

    async def _one(self, query: DataQuery) -> DataResponse:
        model = query.model()
        scenario = query.query_type or model.get("scenario", "random_walk")
        QUERIES.labels(scenario).inc()
        self._count_query()
        if scenario == "random_walk":
            return DataResponse(random_walk(query, int(model.get("seriesCount", 1))), status=200)
        if scenario == "table":
            return DataResponse([table()], status=200)
        if scenario == "error":
            return DataResponse.failure("upstream service answered 502 Bad Gateway",
                                        status=502, source=ErrorSource.DOWNSTREAM)
        if scenario == "slow":
            await asyncio.sleep(float(model.get("seconds", 5)))
            return DataResponse([Frame("slow", [Field.of("done", FieldType.BOOL, [True])])],
                                status=200)
        if scenario == "chatty":
            block = "x" * 1023 + "\n"
            for _ in range(int(model.get("megabytes", 4)) * 1024):
                sys.stdout.write(block)
                sys.stderr.write(block)
            sys.stdout.flush()
            sys.stderr.flush()
            return DataResponse([], status=200)
        return DataResponse.failure(f"unknown scenario {scenario!r}", status=400)

    async def query_data(self, request: QueryDataRequest) -> QueryDataResponse:
        results = await asyncio.gather(*(self._one(q) for q in request.queries))
        return QueryDataResponse({q.ref_id: r for q, r in zip(request.queries, results,
                                                                strict=True)})

    async def query_chunked_data(self, request: QueryDataRequest) -> AsyncIterator[DataChunk]:
        for query in request.queries:
            response = await self._one(query)
            if response.error:
                yield DataChunk(query.ref_id, error=response.error, status=response.status,
                                error_source=response.error_source)
            for index, frame in enumerate(response.frames):
                yield DataChunk(query.ref_id, frame_id=str(index), frame=frame, status=200)

    async def call_resource(self, request: CallResourceRequest
                            ) -> AsyncIterator[CallResourceResponse]:
        if request.path == "json":
            yield CallResourceResponse.json({"uid": self.settings.uid if self.settings else "",
                                             "message": "hello from python"})
        elif request.path == "stream":
            yield CallResourceResponse(200, {"Content-Type": ["text/plain"]}, b"chunk-0\n")
            for index in range(1, 4):
                await asyncio.sleep(0)
                yield CallResourceResponse(body=f"chunk-{index}\n".encode())
        elif request.path == "whoami":
            # Which process answered: tells a locator test the remote server did.
            yield CallResourceResponse.json({"pid": os.getpid(),
                                             "hostname": socket.gethostname()})
        elif request.path == "echo":
            yield CallResourceResponse.json({"method": request.method, "url": request.url,
                                             "body": request.body.decode(errors="replace")})
        else:
            yield CallResourceResponse.json({"message": f"no resource {request.path!r}"}, 404)

    async def check_health(self, request: CheckHealthRequest) -> CheckHealthResult:
        settings = self.settings
        endpoint = settings.json().get("endpoint") if settings else None
        api_key = settings.decrypted_secure_json_data.get("apiKey") if settings else None
        if not endpoint:
            return CheckHealthResult(HealthStatus.ERROR, "jsonData.endpoint is not set")
        if not api_key:
            return CheckHealthResult(HealthStatus.ERROR, "secure setting apiKey is missing")
        if settings.json().get("checkConnection"):
            failure = await _connect_failure(endpoint)
            if failure:
                return CheckHealthResult(HealthStatus.ERROR, failure)
        details = json.dumps({"endpoint": endpoint, "keyLength": len(api_key)}).encode()
        return CheckHealthResult(HealthStatus.OK, f"connected to {endpoint}", details)

    async def subscribe_stream(self, request: StreamRequest) -> StreamResponse:
        if request.path != "counter":
            return StreamResponse(StreamStatus.NOT_FOUND)
        return StreamResponse(StreamStatus.OK)

    async def publish_stream(self, request: StreamRequest) -> StreamResponse:
        return StreamResponse(StreamStatus.PERMISSION_DENIED)

    async def run_stream(self, request: StreamRequest) -> AsyncIterator[bytes]:
        options: dict[str, Any] = json.loads(request.data or b"{}")
        limit = int(options.get("count", 0))
        sent = 0
        while not limit or sent < limit:
            frame = Frame("counter", [Field.of("value", FieldType.INT64, [sent])])
            yield frame_to_json(frame, schema=sent == 0)
            sent += 1
            await asyncio.sleep(float(options.get("interval", 0.05)))

    def dispose(self) -> None:
        log.info("instance disposed", extra={"uid": self.settings.uid if self.settings else ""})


def main() -> None:
    serve(InstanceManagedHandlers(Datasource))
