"""The data frame model: named, typed, equal-length columns held as pyarrow arrays.

Columns stay pyarrow arrays end to end so both encoders work column-wise without a
Python object per value. Field types are the Go SDK's vector types (``int64``,
``time.Time``, ...) because both wire formats are defined in their terms.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


class FrameError(ValueError):
    """A frame is malformed, or bytes cannot be decoded into one."""


class FieldType(enum.Enum):
    """A field's element type, named as the Go SDK names it in JSON ``typeInfo.frame``."""

    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIME = "time.Time"
    JSON = "json.RawMessage"
    ENUM = "enum"

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self]

    @property
    def simple_type(self) -> str:
        """Grafana's coarse type: the Arrow ``tstype`` metadata and JSON schema ``type``."""
        return _SIMPLE_TYPES.get(self, "number")

    @property
    def is_float(self) -> bool:
        return self in (FieldType.FLOAT32, FieldType.FLOAT64)

    @classmethod
    def from_arrow(cls, arrow_type: pa.DataType, tstype: str = "") -> FieldType:
        """The field type for an Arrow type as the Go SDK reads it (enum via ``tstype``)."""
        if tstype == "enum" and arrow_type == pa.uint16():
            return cls.ENUM
        if pa.types.is_timestamp(arrow_type):
            return cls.TIME
        if arrow_type in (pa.string(), pa.string_view()):
            return cls.STRING
        for candidate, candidate_arrow in _ARROW_TYPES.items():
            if candidate is not cls.ENUM and candidate_arrow == arrow_type:
                return candidate
        raise FrameError(f"unsupported Arrow type {arrow_type} (Grafana frames use ints, "
                         "floats, bool, utf8, binary and timestamp[ns])")


_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.INT8: pa.int8(), FieldType.INT16: pa.int16(), FieldType.INT32: pa.int32(),
    FieldType.INT64: pa.int64(), FieldType.UINT8: pa.uint8(), FieldType.UINT16: pa.uint16(),
    FieldType.UINT32: pa.uint32(), FieldType.UINT64: pa.uint64(),
    FieldType.FLOAT32: pa.float32(), FieldType.FLOAT64: pa.float64(),
    FieldType.STRING: pa.string(), FieldType.BOOL: pa.bool_(),
    FieldType.TIME: pa.timestamp("ns"), FieldType.JSON: pa.binary(),
    FieldType.ENUM: pa.uint16(),
}
_SIMPLE_TYPES = {FieldType.STRING: "string", FieldType.BOOL: "boolean",
                 FieldType.TIME: "time", FieldType.JSON: "other", FieldType.ENUM: "enum"}
_BY_NAME = {t.value: t for t in FieldType}


def field_type_named(name: str) -> FieldType:
    """The field type for a Go type string (``*int64`` style nullable names accepted)."""
    try:
        return _BY_NAME[name.removeprefix("*")]
    except KeyError:
        raise FrameError(f"unknown field type {name!r}; expected one of "
                         f"{', '.join(sorted(_BY_NAME))}") from None


@dataclass
class Field:
    """One column. ``values`` is a pyarrow array of ``type.arrow_type``."""

    name: str
    type: FieldType
    values: pa.Array
    nullable: bool = False
    labels: dict[str, str] | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.values, pa.ChunkedArray):
            self.values = self.values.combine_chunks()
        if self.values.type != self.type.arrow_type:
            try:
                self.values = self.values.cast(self.type.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise FrameError(f"field {self.name!r}: values of type {self.values.type} "
                                 f"do not fit {self.type.value}: {exc}") from exc
        if not self.nullable and self.values.null_count:
            raise FrameError(f"field {self.name!r} holds nulls but is not nullable; "
                             "create it with nullable=True")

    @classmethod
    def of(cls, name: str, type: FieldType, values: Iterable[Any], *, nullable: bool = False,
           labels: Mapping[str, str] | None = None,
           config: Mapping[str, Any] | None = None) -> Field:
        """Build a field from Python values (datetimes or epoch ns for time fields)."""
        items = list(values)
        if type is FieldType.JSON:
            import json

            items = [None if v is None else v if isinstance(v, bytes)
                     else json.dumps(v, separators=(",", ":")).encode() for v in items]
        try:
            array = pa.array(items, type=type.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise FrameError(f"field {name!r}: values do not fit {type.value}: {exc}") from exc
        return cls(name, type, array, nullable=nullable,
                   labels=dict(labels) if labels is not None else None,
                   config=dict(config) if config is not None else None)

    def __len__(self) -> int:
        return len(self.values)

    def to_pylist(self) -> list[Any]:
        """The values as Python objects; times as epoch nanoseconds (datetime has only µs)."""
        values = self.values.cast(pa.int64()) if self.type is FieldType.TIME else self.values
        return values.to_pylist()  # type: ignore[no-any-return]


@dataclass
class Frame:
    """A Grafana data frame: equal-length fields plus name, refId and meta."""

    name: str = ""
    fields: list[Field] = field(default_factory=list)
    ref_id: str = ""
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        lengths = {len(f) for f in self.fields}
        if len(lengths) > 1:
            detail = ", ".join(f"{f.name!r}={len(f)}" for f in self.fields)
            raise FrameError(f"frame {self.name!r} has fields of different lengths ({detail}); "
                             "every field of a frame needs the same number of rows")

    @property
    def rows(self) -> int:
        return len(self.fields[0]) if self.fields else 0

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"frame {self.name!r} has no field {name!r}")
