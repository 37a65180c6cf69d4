"""Typed status: each parser reads back what its writer stored, and each writer's merge
patch removes what a pass no longer says, at any depth, so the next pass writes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from plugin_operator.models.status import (
    ArtifactStatus,
    AttachmentEntry,
    AttachmentStatus,
    Condition,
    DataSourceStatus,
    FailureStatus,
    Health,
    Phase,
    PluginInfo,
    PluginStatus,
    SignatureStatus,
    transition,
    with_condition,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


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


def _running_from_image() -> PluginStatus:
    return PluginStatus(
        phase=Phase.RUNNING, message="1 of 1 backends ready", observed_generation=2,
        signature=SignatureStatus("valid", "community", "Acme", "k1"),
        plugin=PluginInfo("datasource", "Sample", True, "gpx_sample", False, True),
        artifact=ArtifactStatus("a" * 64, 10, "http://op/artifacts/a", "reg/sample:1",
                                "/plugin"),
        service_name="backend-sample", replicas=1, ready_replicas=1, restarts=0,
        last_failure=FailureStatus("p-0", 2, "Error", "panic", "2026-01-01T00:00:00Z"),
        conditions=(transition((), "BackendReady", True, "Ready", "ok", 2, NOW),))


def test_a_plugin_status_reads_back_what_it_wrote() -> None:
    status = _running_from_image()
    assert PluginStatus.parse(status.to_json()) == status
    assert status.patch(status.to_json()) is None


def test_a_plugin_moved_from_an_image_to_a_url_loses_the_image_fields() -> None:
    stored = _running_from_image().to_json()
    moved = replace(_running_from_image(), artifact=ArtifactStatus("b" * 64, 12,
                                                                   "http://op/artifacts/b"),
                    last_failure=None)
    patch = moved.patch(stored)
    assert patch is not None
    assert patch["artifact"] == {"sha256": "b" * 64, "size": 12,
                                 "url": "http://op/artifacts/b", "image": None,
                                 "imagePath": None}
    assert patch["lastFailure"] is None
    written = apply(stored, patch)
    assert "image" not in written["artifact"]
    assert "lastFailure" not in written
    # The next pass computes the same status: it writes nothing, so lists no pods again.
    assert moved.patch(written) is None


def test_a_later_health_check_drops_old_details() -> None:
    old = DataSourceStatus(observed_generation=1, plugin_id="x", settings_version=5,
                           settings_hash="h", health=Health("ERROR", "down", "t1",
                                                            {"why": "refused"}))
    stored = old.to_json()
    new = replace(old, health=Health("OK", "up", "t2"))
    written = apply(stored, new.patch(stored) or {})
    assert written["health"] == {"status": "OK", "message": "up", "checkedAt": "t2"}
    assert DataSourceStatus.parse(written) == new
    assert new.patch(written) is None


def test_odd_fields_read_as_absent_instead_of_failing() -> None:
    status = PluginStatus.parse({"phase": "Exploded", "replicas": "many", "artifact": "x",
                                 "conditions": [{"status": "True"}, "junk",
                                                {"type": "Registered", "status": "True"}]})
    assert status.phase is None
    assert status.replicas is None
    assert status.artifact is None
    assert [c.type for c in status.conditions] == ["Registered"]
    assert DataSourceStatus.parse({"settingsVersion": "soon"}).settings_version is None
    assert PluginStatus.parse(None) == PluginStatus()


def test_verified_means_this_generation_and_a_verified_phase_with_an_archive() -> None:
    status = _running_from_image()
    assert status.verified_for(2)
    assert not status.verified_for(3)
    assert not replace(status, phase=Phase.REJECTED).verified_for(2)
    assert not replace(status, artifact=ArtifactStatus()).verified_for(2)
    assert [p for p in Phase if p.verified] == [Phase.STARTING, Phase.RUNNING, Phase.DEGRADED]


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = transition((), "Healthy", True, "CheckPassed", "ok", 1, NOW)
    later = NOW + timedelta(minutes=5)
    same = transition((first,), "Healthy", True, "CheckPassed", "still ok", 2, later)
    flipped = transition((same,), "Healthy", False, "CheckFailed", "down", 2, later)
    assert same.last_transition_time == first.last_transition_time == "2026-01-01T00:00:00Z"
    assert flipped.last_transition_time == "2026-01-01T00:05:00Z"
    assert transition((), "Healthy", None, "Disabled", "", 1, NOW).status == "Unknown"
    replaced = with_condition((first, Condition("Other", "True")), flipped)
    assert [c.type for c in replaced] == ["Other", "Healthy"]
    assert replaced[1] == flipped


def test_an_attachment_entry_names_version_and_address_only_once_attachable() -> None:
    waiting = AttachmentEntry("sample", "acme-sample-datasource", message="waiting")
    assert waiting.to_json() == {"name": "sample", "pluginId": "acme-sample-datasource",
                                 "attached": False, "current": False, "message": "waiting"}
    status = AttachmentStatus(3, "Deployment g/grafana", "0/1", (waiting,), ("uid-1",),
                              (transition((), "Ready", False, "Attaching", "m", 3, NOW),))
    assert AttachmentStatus.parse(status.to_json()) == status
    assert status.to_json()["datasources"] == ["uid-1"]


def test_a_newer_failure_is_a_later_one_or_another_pod_at_the_same_time() -> None:
    old = FailureStatus("p-0", 2, "Error", "", "2026-01-01T00:00:00Z")
    assert FailureStatus("p-0", 2, "Error", "", "2026-01-01T00:00:01Z").is_newer_than(old)
    assert FailureStatus("p-1", 2, "Error", "", "2026-01-01T00:00:00Z").is_newer_than(old)
    assert not old.is_newer_than(old)
    assert old.is_newer_than(None)
