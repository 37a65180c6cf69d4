"""Logging for plugins: hclog-style JSON lines on stderr, which Grafana and our host parse."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "error"}
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class HclogJsonFormatter(logging.Formatter):
    """``{"@level","@message","@timestamp","@module", ...extra}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "@level": _LEVELS.get(record.levelno, "info"),
            "@message": record.getMessage(),
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="microseconds"),
            "@module": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    """Send every log record to stderr as an hclog JSON line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HclogJsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
