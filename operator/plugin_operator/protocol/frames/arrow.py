"""Frames as Arrow IPC *files* (magic ``ARROW1``), with Grafana's schema/field metadata."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from plugin_operator.protocol.frames.model import Field, FieldType, Frame, FrameError


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def frame_to_arrow(frame: Frame) -> bytes:
    """Encode one frame as an Arrow IPC file, the way the Go SDK's ``MarshalArrow`` does."""
    arrow_fields = []
    for f in frame.fields:
        metadata = {b"tstype": f.type.simple_type.encode()}
        if f.labels is not None:
            metadata[b"labels"] = _dumps(f.labels)
        if f.config is not None:
            metadata[b"config"] = _dumps(f.config)
        arrow_fields.append(pa.field(f.name, f.type.arrow_type, nullable=f.nullable,
                                     metadata=metadata))
    schema_metadata = {b"name": frame.name.encode(), b"refId": frame.ref_id.encode()}
    if frame.meta is not None:
        schema_metadata[b"meta"] = _dumps(frame.meta)
    schema = pa.schema(arrow_fields, metadata=schema_metadata)
    batch = pa.RecordBatch.from_arrays([f.values for f in frame.fields], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _json_metadata(metadata: dict[bytes, bytes], key: bytes, where: str) -> Any:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise FrameError(f"{where}: metadata {key.decode()!r} is not valid JSON: {exc}") from exc


def frame_from_arrow(data: bytes) -> Frame:
    """Decode an Arrow IPC file produced by any Grafana SDK into a :class:`Frame`."""
    try:
        reader = pa.ipc.open_file(pa.BufferReader(data))
        table = reader.read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise FrameError(f"not an Arrow IPC file frame ({len(data)} bytes): {exc}") from exc
    schema_md = table.schema.metadata or {}
    name = schema_md.get(b"name", b"").decode()
    fields = []
    for index, arrow_field in enumerate(table.schema):
        md = arrow_field.metadata or {}
        where = f"frame {name!r} field {arrow_field.name!r}"
        field_type = FieldType.from_arrow(arrow_field.type, md.get(b"tstype", b"").decode())
        column = table.column(index).combine_chunks()
        if field_type is FieldType.TIME and arrow_field.type != pa.timestamp("ns"):
            # The Go reader treats every timestamp as ns; we convert instead of guessing.
            column = column.cast(pa.timestamp(arrow_field.type.unit)).cast(pa.timestamp("ns"))
        fields.append(Field(arrow_field.name, field_type, column,
                            nullable=arrow_field.nullable or column.null_count > 0,
                            labels=_json_metadata(md, b"labels", where),
                            config=_json_metadata(md, b"config", where)))
    return Frame(name=name, fields=fields, ref_id=schema_md.get(b"refId", b"").decode(),
                 meta=_json_metadata(schema_md, b"meta", f"frame {name!r}"))
