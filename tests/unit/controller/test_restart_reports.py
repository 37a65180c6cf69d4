"""Restart reports from hosts: strict parsing with a message per mistake, counting each
restart once over the pod's life, and a bound per source address."""

from __future__ import annotations

import json

import pytest

from plugin_operator.controller.planner import observe_pod
from plugin_operator.controller.restart_reports import (
    REPORTS_PER_WINDOW,
    ReportError,
    SourceLimiter,
    annotation_update,
    parse_report,
)
from plugin_operator.controller.status import latest_failure
from plugin_operator.models import naming

BOOT_A, BOOT_B = "a" * 32, "b" * 32
LAST = {"exitCode": 2, "reason": "Error", "message": "plugin exited with code 2\npanic: boom",
        "time": "2026-01-01T00:00:05Z"}


def report(boot: str, restarts: int, last: object = LAST) -> bytes:
    return json.dumps({"boot": boot, "restarts": restarts, "last": last}).encode()


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"boot": "XYZ", "restarts": 1}).encode(), "boot"),
    (json.dumps({"boot": BOOT_A, "restarts": -1}).encode(), "restarts"),
    (json.dumps({"boot": BOOT_A, "restarts": True}).encode(), "restarts"),
    (report(BOOT_A, 1, "crashed"), "last:"),
    (report(BOOT_A, 1, {**LAST, "exitCode": "2"}), "exitCode"),
    (report(BOOT_A, 1, {**LAST, "reason": "two words"}), "reason"),
    (report(BOOT_A, 1, {**LAST, "message": "x" * 5000}), "message"),
    (report(BOOT_A, 1, {**LAST, "time": "yesterday"}), "time"),
])
def test_bad_reports_are_refused_with_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(ReportError) as refused:
        parse_report(body)
    assert refused.value.status == 400
    assert says in str(refused.value)


def test_each_restart_is_counted_once_across_reports_and_container_lives() -> None:
    annotations: dict[str, str] = {}
    first = annotation_update(annotations, parse_report(report(BOOT_A, 1)))
    assert first is not None
    assert first[naming.ANNOTATION_IN_POD_RESTARTS] == "1"
    annotations.update(first)
    # The same report again, or an older one of the same life, adds nothing.
    assert annotation_update(annotations, parse_report(report(BOOT_A, 1))) is None
    annotations.update(annotation_update(annotations, parse_report(report(BOOT_A, 3))) or {})
    assert annotations[naming.ANNOTATION_IN_POD_RESTARTS] == "3"
    assert annotation_update(annotations, parse_report(report(BOOT_A, 2))) is None
    # The kubelet restarted the container: the new host counts from zero again.
    annotations.update(annotation_update(annotations, parse_report(report(BOOT_B, 1))) or {})
    assert annotations[naming.ANNOTATION_IN_POD_RESTARTS] == "4"
    assert json.loads(annotations[naming.ANNOTATION_IN_POD_LAST_EXIT]) == LAST


def test_the_pod_reads_in_pod_restarts_and_their_last_exit() -> None:
    update = annotation_update({}, parse_report(report(BOOT_A, 2))) or {}
    pod = observe_pod({
        "metadata": {"name": "x-abcdef0123-0", "uid": "u", "annotations": update},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": naming.BACKEND_CONTAINER, "restartCount": 1, "state": {"running": {}}}]}})
    assert pod.restarts == 3  # one by the kubelet, two by the host
    failure = latest_failure([pod])
    assert failure is not None
    assert failure.termination.exit_code == 2
    reason, message = failure.event()
    assert reason == "BackendCrashed"
    assert message.endswith("exited with code 2 (Error): panic: boom")


def test_reports_are_bounded_per_source() -> None:
    now = [0.0]
    limiter = SourceLimiter(lambda: now[0])
    assert all(limiter.allow("10.0.0.1") for _ in range(REPORTS_PER_WINDOW))
    assert not limiter.allow("10.0.0.1")
    assert limiter.allow("10.0.0.2")
    now[0] += 11.0
    assert limiter.allow("10.0.0.1")
