"""Frames in Grafana's JSON frame format (``{"schema": ..., "data": ...}``).

The encoder is column-wise: each column is turned into one JSON array text by pyarrow
compute kernels (cast to string, fill nulls, join), so numbers and times never become
Python objects. NaN/±Inf are written as ``null`` with their rows in ``data.entities``; times
are epoch milliseconds with any sub-millisecond remainder in ``data.nanos``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from plugin_operator.protocol.frames.model import (
    Field,
    FieldType,
    Frame,
    FrameError,
    field_type_named,
)

_NS_PER_MS = 1_000_000
_ENTITY_VALUES = {"NaN": float("nan"), "Inf": float("inf"), "NegInf": float("-inf")}


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _join_as_json_array(texts: pa.Array) -> bytes:
    """``[t0,t1,...]`` from a string array whose nulls mean JSON null, in one kernel call."""
    texts = texts.fill_null("null")
    if len(texts) == 0:
        return b"[]"
    offsets = pa.array([0, len(texts)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), ",")
    text: bytes = joined[0].as_buffer().to_pybytes()
    return b"[" + text + b"]"


def _split_ms(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Epoch ms (floored) and the 0..999999 ns remainder, as Go's UnixMilli/Nanosecond do."""
    ns = values.cast(pa.int64())
    ms = pc.divide(ns, _NS_PER_MS)  # truncates toward zero
    rest = pc.subtract(ns, pc.multiply(ms, _NS_PER_MS))
    negative = pc.less(rest, 0)
    if pc.any(negative).as_py():
        ms = pc.if_else(negative, pc.subtract(ms, 1), ms)
        rest = pc.if_else(negative, pc.add(rest, _NS_PER_MS), rest)
    return ms, rest


def _float_entities(values: pa.Array) -> tuple[pa.Array, dict[str, list[int]] | None]:
    """The column with NaN/±Inf nulled out, and their row indices by entity name."""
    nan = pc.fill_null(pc.is_nan(values), False)
    inf = pc.fill_null(pc.is_inf(values), False)
    if not (pc.any(nan).as_py() or pc.any(inf).as_py()):
        return values, None
    positive = pc.fill_null(pc.greater(values, 0), False)
    entities: dict[str, list[int]] = {}
    for key, mask in (("NaN", nan), ("Inf", pc.and_(inf, positive)),
                      ("NegInf", pc.and_(inf, pc.invert(positive)))):
        rows = pc.indices_nonzero(mask).to_pylist()
        if rows:
            entities[key] = rows
    special = pc.or_(nan, inf)
    return pc.if_else(special, pa.scalar(None, values.type), values), entities


def _column_json(f: Field) -> tuple[bytes, dict[str, list[int]] | None, bytes | None]:
    """One column as (values JSON, entities or None, nanos JSON or None)."""
    values = f.values
    if f.type is FieldType.STRING:
        return _compact(values.to_pylist()), None, None
    if f.type is FieldType.JSON:
        parts = [b"null" if v is None else v for v in values.to_pylist()]
        return b"[" + b",".join(parts) + b"]", None, None
    if f.type is FieldType.TIME:
        ms, rest = _split_ms(values)
        nanos = None
        if pc.any(pc.not_equal(rest, 0)).as_py():
            nanos = _join_as_json_array(rest.fill_null(0).cast(pa.string()))
        return _join_as_json_array(ms.cast(pa.string())), None, nanos
    entities = None
    if f.type.is_float:
        values, entities = _float_entities(values)
    return _join_as_json_array(values.cast(pa.string())), entities, None


def _schema_json(frame: Frame) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if frame.name:
        schema["name"] = frame.name
    if frame.ref_id:
        schema["refId"] = frame.ref_id
    if frame.meta is not None:
        schema["meta"] = frame.meta
    fields = []
    for f in frame.fields:
        item: dict[str, Any] = {}
        if f.name:
            item["name"] = f.name
        item["type"] = f.type.simple_type
        item["typeInfo"] = {"frame": f.type.value, **({"nullable": True} if f.nullable else {})}
        if f.labels is not None:
            item["labels"] = f.labels
        if f.config is not None:
            item["config"] = f.config
        fields.append(item)
    schema["fields"] = fields
    return schema


def frame_to_json(frame: Frame, *, schema: bool = True, data: bool = True) -> bytes:
    """Encode a frame as Grafana's JSON frame (schema and/or data parts)."""
    parts = []
    if schema:
        parts.append(b'"schema":' + _compact(_schema_json(frame)))
    if data:
        columns = [_column_json(f) for f in frame.fields]
        body = b'"values":[' + b",".join(c[0] for c in columns) + b"]"
        if any(c[1] is not None for c in columns):
            body += b',"entities":' + _compact([c[1] for c in columns])
        if any(c[2] is not None for c in columns):
            body += b',"nanos":[' + b",".join(c[2] or b"null" for c in columns) + b"]"
        parts.append(b'"data":{' + body + b"}")
    return b"{" + b",".join(parts) + b"}"


def _decode_column(kind: Field, values: list[Any], entities: Any, nanos: Any) -> pa.Array:
    where = f"field {kind.name!r}"
    field_type = kind.type
    if field_type is FieldType.TIME:
        ms = pa.array(values, pa.int64())
        ns = pc.multiply(ms, _NS_PER_MS)
        if nanos:
            ns = pc.add(ns, pa.array(nanos, pa.int64()))
        return ns.cast(pa.timestamp("ns"))
    if field_type is FieldType.JSON:
        values = [None if v is None and kind.nullable else _compact(v) for v in values]
    elif field_type.is_float and entities:
        values = list(values)
        for key, rows in entities.items():
            if key in _ENTITY_VALUES:
                for row in rows:
                    values[row] = _ENTITY_VALUES[key]
    try:
        return pa.array(values, type=field_type.arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise FrameError(f"{where}: values do not fit {field_type.value}: {exc}") from exc


def _schema_fields(schema: Any) -> tuple[Frame, list[Field]]:
    if not isinstance(schema, dict):
        raise FrameError("frame JSON 'schema' must be an object")
    kinds = []
    for index, item in enumerate(schema.get("fields") or []):
        type_info = item.get("typeInfo") or {}
        if "frame" not in type_info:
            raise FrameError(f"frame JSON field {index} has no typeInfo.frame")
        field_type = field_type_named(type_info["frame"])
        kinds.append(Field(item.get("name", ""), field_type, pa.array([], field_type.arrow_type),
                           nullable=bool(type_info.get("nullable")) or
                           type_info["frame"].startswith("*"),
                           labels=item.get("labels"), config=item.get("config")))
    frame = Frame(name=schema.get("name", ""), fields=[], ref_id=schema.get("refId", ""),
                  meta=schema.get("meta"))
    return frame, kinds


def frame_from_json(text: bytes | str, *, schema_frame: Frame | None = None) -> Frame:
    """Decode a JSON frame. Data-only JSON needs the frame that carried its schema."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise FrameError("frame JSON must be an object with 'schema' and/or 'data'")
    if "schema" in document:
        frame, kinds = _schema_fields(document["schema"])
    elif schema_frame is not None:
        frame = Frame(schema_frame.name, [], schema_frame.ref_id, schema_frame.meta)
        kinds = schema_frame.fields
    else:
        raise FrameError("frame JSON has no 'schema'; pass schema_frame= for data-only frames")
    data = document.get("data") or {}
    values = data.get("values")
    if values is None:
        values = [[] for _ in kinds]
    if len(values) != len(kinds):
        raise FrameError(f"frame JSON has {len(values)} value columns for {len(kinds)} fields")
    entities = data.get("entities") or [None] * len(kinds)
    nanos = data.get("nanos") or [None] * len(kinds)
    fields = [Field(k.name, k.type, _decode_column(k, v, e, n), nullable=k.nullable,
                    labels=k.labels, config=k.config)
              for k, v, e, n in zip(kinds, values, entities, nanos, strict=False)]
    frame.fields = fields
    frame.__post_init__()
    return frame
