"""Turning a plugin's stderr/stdout lines into structured records, as go-plugin does."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

_HCLOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
                 "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}
_PREFIXES = (("[TRACE]", logging.DEBUG), ("[DEBUG]", logging.DEBUG), ("[INFO]", logging.INFO),
             ("[WARN]", logging.WARNING), ("[ERROR]", logging.ERROR),
             ("panic: ", logging.ERROR), ("fatal error: ", logging.ERROR))


@dataclass
class PluginLogRecord:
    level: int
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_plugin_line(line: str, stream: str) -> PluginLogRecord:
    """An hclog JSON line keeps its level, message and keys; other lines go by prefix."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            level = _HCLOG_LEVELS.get(str(entry.pop("@level", "info")).lower(), logging.INFO)
            message = str(entry.pop("@message", ""))
            entry.pop("@timestamp", None)
            module = entry.pop("@module", None)
            fields = {"stream": stream, **({"module": module} if module else {}), **entry}
            return PluginLogRecord(level, message, fields)
    for prefix, level in _PREFIXES:
        if text.startswith(prefix):
            return PluginLogRecord(level, text.removeprefix(prefix).strip()
                                   if prefix.startswith("[") else text, {"stream": stream})
    return PluginLogRecord(logging.DEBUG, text, {"stream": stream})
