"""Grafana data frames: the model, and its Arrow IPC file and JSON encodings."""

from plugin_operator.protocol.frames.arrow import frame_from_arrow, frame_to_arrow
from plugin_operator.protocol.frames.json import frame_from_json, frame_to_json
from plugin_operator.protocol.frames.model import Field, FieldType, Frame, FrameError

__all__ = [
    "Field",
    "FieldType",
    "Frame",
    "FrameError",
    "frame_from_arrow",
    "frame_from_json",
    "frame_to_arrow",
    "frame_to_json",
]
