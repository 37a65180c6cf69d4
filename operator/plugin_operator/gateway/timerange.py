"""Grafana's ``from``/``to`` strings: epoch milliseconds or relative to now (``now-6h``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RELATIVE = re.compile(r"^now(?:(?P<sign>[+-])(?P<amount>\d+)(?P<unit>ms|s|m|h|d|w|M|y))?"
                       r"(?:/(?P<round>[smhdwMy]))?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, "M": 30 * 86_400_000, "y": 365 * 86_400_000}


class TimeRangeError(ValueError):
    """A ``from``/``to`` value that is neither epoch milliseconds nor ``now[+-N<unit>]``."""


@dataclass(frozen=True)
class ParsedRange:
    from_ms: int
    to_ms: int


def parse_time(text: str | int | float, now_ms: int, *, field: str) -> int:
    """Epoch milliseconds for one bound. ``now_ms`` makes the result reproducible."""
    if isinstance(text, bool):
        raise TimeRangeError(f"{field} must be a string such as 'now-1h' or epoch ms, not a bool")
    if isinstance(text, int | float):
        return int(text)
    value = text.strip()
    if value.isdigit():
        return int(value)
    match = _RELATIVE.match(value)
    if match is None:
        raise TimeRangeError(f"{field}={text!r} is not a time: use epoch milliseconds "
                             "('1700000000000') or a relative time ('now', 'now-6h', 'now-7d')")
    result = now_ms
    if match["amount"]:
        delta = int(match["amount"]) * _UNIT_MS[match["unit"]]
        result += delta if match["sign"] == "+" else -delta
    if match["round"]:
        # Rounding to a unit start ("now/d") in UTC; calendar units beyond days are approximate.
        step = _UNIT_MS[match["round"]]
        result -= result % step
    return result


def parse_range(from_text: str | int | float, to_text: str | int | float,
                now_ms: int) -> ParsedRange:
    """Both bounds; ``from`` after ``to`` is an error, as an empty range is never meant."""
    parsed = ParsedRange(parse_time(from_text, now_ms, field="from"),
                         parse_time(to_text, now_ms, field="to"))
    if parsed.from_ms > parsed.to_ms:
        raise TimeRangeError(f"from ({from_text!r}) is after to ({to_text!r}); swap them")
    return parsed
