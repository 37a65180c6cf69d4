import math

import pyarrow as pa
import pytest

from plugin_operator.protocol.frames import (
    Field,
    FieldType,
    Frame,
    FrameError,
    frame_from_arrow,
    frame_from_json,
    frame_to_arrow,
    frame_to_json,
)


def _same(a: Frame, b: Frame) -> None:
    assert (a.name, a.ref_id, a.meta) == (b.name, b.ref_id, b.meta)
    assert len(a.fields) == len(b.fields)
    for x, y in zip(a.fields, b.fields, strict=True):
        assert (x.name, x.type, x.nullable, x.labels, x.config) == \
            (y.name, y.type, y.nullable, y.labels, y.config)
        left, right = x.to_pylist(), y.to_pylist()
        for u, v in zip(left, right, strict=True):
            if isinstance(u, float) and math.isnan(u):
                assert isinstance(v, float)
                assert math.isnan(v)
            else:
                assert u == v


def corner_frame() -> Frame:
    return Frame("corners", [
        Field.of("time", FieldType.TIME, [1, None, -1_500_000, 1_700_000_000_123_456_789],
                 nullable=True, labels={"a": "b"}, config={"unit": "ms", "decimals": 2}),
        Field.of("f64", FieldType.FLOAT64, [math.nan, math.inf, -math.inf, 0.1]),
        Field.of("f32", FieldType.FLOAT32, [None, math.nan, 1.5, -0.0], nullable=True),
        Field.of("i64", FieldType.INT64, [-(2**63), 2**63 - 1, 0, None], nullable=True),
        Field.of("u64", FieldType.UINT64, [0, 2**64 - 1, 1, 2]),
        Field.of("s", FieldType.STRING, ["", "quote\"\\ ü\n", None, "x"], nullable=True),
        Field.of("b", FieldType.BOOL, [True, False, None, True], nullable=True),
        Field.of("j", FieldType.JSON, [{"k": [1, 2]}, "s", None, 3], nullable=True),
        Field.of("e", FieldType.ENUM, [0, 1, 2, 65535]),
        Field.of("", FieldType.INT8, [-128, 127, 0, 1]),
    ], ref_id="A", meta={"type": "table", "custom": {"x": 1}, "notices": [{"text": "n"}]})


@pytest.mark.parametrize(("encode", "decode"), [(frame_to_arrow, frame_from_arrow),
                                                (frame_to_json, frame_from_json)])
def test_round_trips_are_lossless_for_corner_cases(encode, decode) -> None:
    frame = corner_frame()
    _same(decode(encode(frame)), frame)


def test_arrow_is_an_ipc_file_with_grafana_metadata() -> None:
    data = frame_to_arrow(corner_frame())
    assert data.startswith(b"ARROW1")
    schema = pa.ipc.open_file(pa.BufferReader(data)).schema
    assert schema.metadata[b"refId"] == b"A"
    assert schema.field("time").type == pa.timestamp("ns")
    assert schema.field("time").metadata[b"tstype"] == b"time"
    assert schema.field("e").metadata[b"tstype"] == b"enum"
    assert schema.field("j").type == pa.binary()
    assert not schema.field("f64").nullable


def test_json_uses_entities_nanos_and_milliseconds() -> None:
    import json
    doc = json.loads(frame_to_json(corner_frame()))
    assert doc["data"]["values"][0] == [0, None, -2, 1_700_000_000_123]
    assert doc["data"]["nanos"][0] == [1, 0, 500_000, 456_789]
    assert doc["data"]["nanos"][1] is None
    assert doc["data"]["entities"][1] == {"NaN": [0], "Inf": [1], "NegInf": [2]}
    assert doc["data"]["values"][1][:3] == [None, None, None]
    assert doc["schema"]["fields"][0]["typeInfo"] == {"frame": "time.Time", "nullable": True}
    assert "nullable" not in doc["schema"]["fields"][1]["typeInfo"]
    assert "name" not in doc["schema"]["fields"][-1]


def test_json_schema_only_and_data_only() -> None:
    frame = corner_frame()
    schema_only = frame_from_json(frame_to_json(frame, data=False))
    assert schema_only.rows == 0
    _same(frame_from_json(frame_to_json(frame, schema=False), schema_frame=schema_only), frame)
    with pytest.raises(FrameError, match="schema_frame"):
        frame_from_json(frame_to_json(frame, schema=False))


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(FrameError, match="different lengths"):
        Frame("x", [Field.of("a", FieldType.INT64, [1]), Field.of("b", FieldType.INT64, [])])
    with pytest.raises(FrameError, match="not nullable"):
        Field.of("a", FieldType.INT64, [None])
    with pytest.raises(FrameError, match="Arrow IPC file"):
        frame_from_arrow(b"not arrow")
    with pytest.raises(FrameError, match="unknown field type"):
        frame_from_json(b'{"schema":{"fields":[{"typeInfo":{"frame":"complex128"}}]}}')


def test_empty_frame_round_trips() -> None:
    frame = Frame("empty", [Field.of("v", FieldType.FLOAT64, [])])
    _same(frame_from_arrow(frame_to_arrow(frame)), frame)
    _same(frame_from_json(frame_to_json(frame)), frame)
