"""Grafana's ``from``/``to`` strings: epoch milliseconds or relative to now (``now-6h``)."""

from __future__ import annotations

import math
import re

from plugin_operator.protocol.models import TimeRange

_RELATIVE = re.compile(r"^now(?:(?P<sign>[+-])(?P<amount>[0-9]{1,15})"
                       r"(?P<unit>ms|s|m|h|d|w|M|y))?(?:/(?P<round>[smhdwMy]))?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, "M": 30 * 86_400_000, "y": 365 * 86_400_000}


# Plugins turn times into nanoseconds in an int64, which ends in April 2262.
MAX_EPOCH_MS = (2**63 - 1) // 1_000_000


class TimeRangeError(ValueError):
    """A ``from``/``to`` value that is neither epoch milliseconds nor ``now[+-N<unit>]``."""


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut short: error messages must stay small whatever was sent."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _in_range(ms: int | float, text: object, field: str) -> int:
    if not (isinstance(ms, int) or math.isfinite(ms)) or not 0 <= ms <= MAX_EPOCH_MS:
        raise TimeRangeError(f"{field}={shown(text)} is out of range: use epoch milliseconds "
                             f"from 0 to {MAX_EPOCH_MS} (years 1970-2262) or a relative "
                             "time such as 'now-6h'")
    return int(ms)


def parse_time(text: object, now_ms: int, *, field: str) -> int:
    """Epoch milliseconds for one bound. ``now_ms`` makes the result reproducible."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return _in_range(text, text, field)
    if not isinstance(text, str):
        raise TimeRangeError(f"{field} must be a string such as 'now-1h' or '1700000000000', "
                             f"or a number of epoch milliseconds, not {shown(text)}")
    value = text.strip()
    # Epoch milliseconds: ASCII digits only (str.isdigit alone would let "²" or Arabic
    # digits through to int()), at most 15 of them.
    if value.isascii() and value.isdigit() and len(value) <= 15:
        return _in_range(int(value), text, field)
    match = _RELATIVE.match(value)
    if match is None:
        raise TimeRangeError(f"{field}={shown(text)} is not a time: use epoch milliseconds "
                             "('1700000000000') or a relative time ('now', 'now-6h', 'now-7d')")
    result = now_ms
    if match["amount"]:
        delta = int(match["amount"]) * _UNIT_MS[match["unit"]]
        result += delta if match["sign"] == "+" else -delta
    if match["round"]:
        # Rounding to a unit start ("now/d") in UTC; calendar units beyond days are approximate.
        step = _UNIT_MS[match["round"]]
        result -= result % step
    return _in_range(result, text, field)


def parse_range(from_text: object, to_text: object, now_ms: int) -> TimeRange:
    """Both bounds; ``from`` after ``to`` is an error, as an empty range is never meant."""
    parsed = TimeRange(parse_time(from_text, now_ms, field="from"),
                       parse_time(to_text, now_ms, field="to"))
    if parsed.from_ms > parsed.to_ms:
        raise TimeRangeError(f"from ({shown(from_text)}) is after to ({shown(to_text)}); swap them")
    return parsed
