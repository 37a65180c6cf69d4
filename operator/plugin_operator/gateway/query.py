"""``POST /api/ds/query``: the request parsed into per-datasource calls, and the results
written as Grafana writes them (protocol.md §4.3, §5.1)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from plugin_operator.protocol.frames import frame_from_arrow, frame_to_json
from plugin_operator.protocol.models import DataQuery, FrameFormat

from .errors import GatewayError, result_status, utf8_text
from .limits import Limits
from .timerange import MAX_EPOCH_MS, TimeRangeError, parse_range, shown

DEFAULT_MAX_DATA_POINTS = 100
DEFAULT_INTERVAL_MS = 1000
DEFAULT_LIMITS = Limits()
# Datasource uids Grafana handles itself; no plugin serves them.
BUILTIN_UIDS = frozenset({"__expr__", "grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --"})
# json.dumps(..., separators=...) builds an encoder per call; one serves every query model.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


@dataclass
class DatasourceQueries:
    uid: str
    queries: list[DataQuery] = field(default_factory=list)


@dataclass
class ParsedQueryRequest:
    by_datasource: dict[str, DatasourceQueries]
    ref_ids: list[str]


def _bad(message: str) -> GatewayError:
    return GatewayError(400, message, "query.badRequest")


def _datasource_uid(query: Mapping[str, Any], index: int) -> str:
    ds = query.get("datasource")
    # type() first: the ABC isinstance is slow, and parsed JSON objects are dicts.
    if (type(ds) is dict or isinstance(ds, Mapping)) and isinstance(ds.get("uid"), str) \
            and ds["uid"]:
        return utf8_text(str(ds["uid"]), f"queries[{index}].datasource.uid")
    if isinstance(ds, str) and ds:
        # Pre-8.3 dashboards name the datasource with a plain string; here it is the uid.
        return utf8_text(ds, f"queries[{index}].datasource")
    raise _bad(f"queries[{index}] has no datasource: set \"datasource\": {{\"uid\": \"<uid>\"}}")


def _int(query: Mapping[str, Any], key: str, default: int, index: int, highest: int) -> int:
    value = query.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"queries[{index}].{key} must be a number, not {shown(value)}")
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= highest:
        raise _bad(f"queries[{index}].{key}={shown(value)} is out of range: use a number from "
                   f"0 to {highest}")
    return int(value)


def _load(body: bytes, limits: Limits) -> Any:
    # Counted before parsing: a body of tiny objects ("[{},{},...]") costs ~25 times its
    # size once parsed, and each nesting level costs a level of recursion.
    containers = body.count(b"{") + body.count(b"[")
    if containers > limits.json_containers:
        raise _bad(f"the body holds {containers} JSON objects and arrays (or is nested that "
                   f"deep); at most {limits.json_containers} are accepted: send fewer or "
                   "simpler queries per request (the gateway's --max-json-containers)")
    try:
        if body[:1] == b"{":
            # The usual body (UTF-8, an object first thing): decoded without json.loads's
            # encoding detection and whitespace regexes. Anything else, or anything wrong,
            # goes through json.loads, which also words the error.
            try:
                text = body.decode()
                payload, end = _DECODER.raw_decode(text)
            except ValueError:
                pass
            else:
                if end == len(text) or not text[end:].strip(_JSON_SPACE):
                    return payload
        return json.loads(body or b"null")
    except RecursionError as exc:
        raise _bad("the body's JSON is nested too deeply; flatten the query model") from exc
    except ValueError as exc:  # includes bodies that are not UTF-8
        raise _bad(f"the body is not JSON: {shown(str(exc), 200)}") from exc


def parse_query_request(body: bytes, now_ms: int,
                        limits: Limits = DEFAULT_LIMITS) -> ParsedQueryRequest:
    payload = _load(body, limits)
    if not isinstance(payload, dict):
        raise _bad('the body must be a JSON object: {"from": ..., "to": ..., "queries": [...]}')
    queries = payload.get("queries")
    if not isinstance(queries, list) or not queries:
        raise _bad("queries must be a non-empty list")
    if len(queries) > limits.queries_per_request:
        raise _bad(f"{len(queries)} queries in one request; at most "
                   f"{limits.queries_per_request} are accepted: split them over several "
                   "requests (the gateway's --max-queries-per-request)")
    try:
        time_range = parse_range(payload.get("from", "now-6h"), payload.get("to", "now"), now_ms)
    except TimeRangeError as exc:
        raise _bad(str(exc)) from exc
    grouped: dict[str, DatasourceQueries] = {}
    ref_ids: list[str] = []
    seen: set[str] = set()
    for index, query in enumerate(queries):
        if not isinstance(query, dict):
            raise _bad(f"queries[{index}] must be a JSON object")
        uid = _datasource_uid(query, index)
        if uid in BUILTIN_UIDS:
            raise _bad(f"queries[{index}] uses datasource {uid!r}, which is built into "
                       "Grafana; the gateway serves plugin datasources only")
        ref_id = query.get("refId") or "A"
        if not isinstance(ref_id, str):
            raise _bad(f"queries[{index}].refId must be a string")
        utf8_text(ref_id, f"queries[{index}].refId")
        if ref_id in seen:
            raise _bad(f"refId {shown(ref_id)} is used twice; give every query its own refId")
        seen.add(ref_id)
        ref_ids.append(ref_id)
        query_type = query.get("queryType") or ""
        if not isinstance(query_type, str):
            raise _bad(f"queries[{index}].queryType must be a string, not {shown(query_type)}")
        utf8_text(query_type, f"queries[{index}].queryType")
        try:
            model = _COMPACT.encode(query).encode()
        except RecursionError as exc:
            raise _bad(f"queries[{index}] is nested too deeply; flatten the query model") \
                from exc
        # Only the encoded model is kept: the parsed body (many times its size in Python
        # objects) is garbage once this function returns, not held during the plugin call.
        group = grouped.get(uid)
        if group is None:
            group = grouped[uid] = DatasourceQueries(uid)
        group.queries.append(DataQuery(
            ref_id=ref_id, query_type=query_type,
            max_data_points=_int(query, "maxDataPoints", DEFAULT_MAX_DATA_POINTS, index,
                                 limits.max_data_points),
            interval_ms=_int(query, "intervalMs", DEFAULT_INTERVAL_MS, index, MAX_EPOCH_MS),
            time_range=time_range, json=model))
    return ParsedQueryRequest(grouped, ref_ids)


@dataclass
class QueryResult:
    """One refId's outcome with its frames already encoded as Grafana JSON."""

    status: int = 200
    error: str = ""
    error_source: str = ""
    frames: list[bytes] = field(default_factory=list)
    # Grafana writes "frames": [] for every answer a plugin gave (the SDK decodes it into a
    # non-nil list) and no "frames" key for a datasource that failed as a whole.
    from_plugin: bool = True


def frames_as_json(frames: Sequence[bytes], fmt: FrameFormat) -> list[bytes]:
    """JSON frames pass through untouched; Arrow frames (older plugins) are re-encoded."""
    if fmt is FrameFormat.JSON:
        return list(frames)
    return [frame_to_json(frame_from_arrow(raw)) for raw in frames]


def result_from_response(frames: Sequence[bytes], fmt: FrameFormat, error: str, status: int,
                         error_source: str) -> QueryResult:
    return QueryResult(result_status(status, error), error, error_source if error else "",
                       frames_as_json(frames, fmt))


def encode_results(results: Mapping[str, QueryResult]) -> bytes:
    """``{"results": {...}}`` with refIds sorted, frames spliced in as they are."""
    parts = [b'{"results":{']
    for index, ref_id in enumerate(sorted(results)):
        result = results[ref_id]
        if index:
            parts.append(b",")
        parts.append(encode_basestring_ascii(ref_id).encode())  # json.dumps(ref_id)
        parts.append(b":{")
        if result.error:
            parts.append(b'"error":' + encode_basestring_ascii(result.error).encode()
                         + b',"errorSource":'
                         + encode_basestring_ascii(result.error_source).encode() + b",")
        parts.append(b'"status":' + str(result.status).encode())
        if result.from_plugin:
            parts.append(b',"frames":[')
            parts.append(b",".join(result.frames))
            parts.append(b"]")
        parts.append(b"}")
    parts.append(b"}}")
    return b"".join(parts)


def overall_status(results: Mapping[str, QueryResult]) -> int:
    """Grafana answers 400 when any result carries an error, else 200."""
    return 400 if any(r.error for r in results.values()) else 200


def failed_results(ref_ids: Sequence[str], error: GatewayError) -> dict[str, QueryResult]:
    """One datasource of several failed as a whole: each of its queries reports why."""
    return {ref: QueryResult(error.status, error.message, "plugin", from_plugin=False)
            for ref in ref_ids}
