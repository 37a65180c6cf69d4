"""The JSON merge patch (RFC 7386) that turns the status the apiserver holds into the one a
pass computed.

A merge patch keeps every key it does not mention, at any depth: a status written as a
whole would keep what the world no longer says (``status.artifact.image`` after a Plugin
moved from an image to a URL, an old ``health.details``), and then never compare equal to
the status the next pass computes, so each pass would write it again. The patch names
those keys with null; None values in the computed status mean "absent".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def without_nones(value: Any) -> Any:
    """``value`` with None-valued keys left out of every mapping in it."""
    if isinstance(value, Mapping):
        return {k: without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nones(v) for v in value]
    return value


def merge_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]
                ) -> dict[str, Any] | None:
    """The patch from ``current`` to ``wanted`` (without its None values), or None when
    they are already equal."""
    target = without_nones(wanted)
    patch = _diff(dict(current or {}), target)
    return patch or None


def _diff(current: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in current if key not in target}
    for key, value in target.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = _diff(old, value)
            if nested:
                patch[key] = nested
        elif key not in current or old != value:
            # A mapping replacing a non-mapping must not inherit anything: the patch's
            # mapping merges into nothing, which a merge patch does when the old value is
            # not an object.
            patch[key] = value
    return patch
