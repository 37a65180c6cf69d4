"""Status writes are merge patches that remove what a pass no longer says, at any depth."""

from __future__ import annotations

from typing import Any

from plugin_operator.controller.status_patch import merge_patch


def apply(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the apiserver applies a merge patch."""
    out = dict(document)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = apply(out[key], value)
        elif isinstance(value, dict):
            out[key] = apply({}, value)
        else:
            out[key] = value
    return out


def test_nested_keys_a_pass_no_longer_sets_are_removed() -> None:
    held = {"phase": "Running", "artifact": {"sha256": "a", "image": "x:1", "size": 3},
            "health": {"status": "ERROR", "details": {"why": "old"}}, "lastFailure": {"pod": "p"}}
    computed = {"phase": "Running", "artifact": {"sha256": "b", "size": 3},
                "health": {"status": "OK", "details": None}, "lastFailure": None}
    patch = merge_patch(held, computed)
    assert patch == {"artifact": {"sha256": "b", "image": None},
                     "health": {"status": "OK", "details": None}, "lastFailure": None}
    written = apply(held, patch)
    assert written == {"phase": "Running", "artifact": {"sha256": "b", "size": 3},
                       "health": {"status": "OK"}}
    # The next pass computes the same status: nothing to write.
    assert merge_patch(written, computed) is None


def test_lists_and_new_objects_are_written_whole() -> None:
    held = {"conditions": [{"type": "Ready", "status": "True"}], "plugin": "text"}
    computed = {"conditions": [{"type": "Ready", "status": "False"}],
                "plugin": {"id": "x", "type": None}}
    patch = merge_patch(held, computed)
    assert patch == {"conditions": [{"type": "Ready", "status": "False"}],
                     "plugin": {"id": "x"}}
    assert apply(held, patch) == {"conditions": [{"type": "Ready", "status": "False"}],
                                  "plugin": {"id": "x"}}


def test_an_empty_status_gets_everything() -> None:
    assert merge_patch(None, {"phase": "Pending", "message": None}) == {"phase": "Pending"}
