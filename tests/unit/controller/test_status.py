"""status.lastFailure keeps a crash's cause (its first lines) and its last lines, and
reports a failed fetch of the plugin by a pod's init step."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin_operator.controller.planner import Termination, observe_pod
from plugin_operator.controller.status import (
    FETCH_FAILED,
    MESSAGE_LIMIT,
    Failure,
    abbreviate,
    latest_failure,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _go_crash() -> str:
    head = ("panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]\n")
    requests = "".join(f'logger=plugin level=info msg="request {i}" path=/api/query '
                       f"status=200 duration=1.{i % 10}ms\n" for i in range(200))
    return head + requests + "goroutine 42 [running]:\nmain.query(0x0)\nexit status 2"


def test_a_crash_keeps_its_first_and_last_lines_within_the_bound() -> None:
    message = _go_crash()
    status = Failure("pod-1", Termination(2, "Error", message, NOW)).as_status(NOW)
    kept = status.message
    assert len(kept) <= MESSAGE_LIMIT
    assert kept.startswith("panic: runtime error: invalid memory address")
    assert "[signal SIGSEGV: segmentation violation" in kept.splitlines()[1]
    assert kept.endswith("goroutine 42 [running]:\nmain.query(0x0)\nexit status 2")
    assert "characters left out" in kept
    # Whole lines only on both sides of the marker.
    for line in kept.splitlines():
        assert line.startswith(("panic:", "[signal", "logger=", "[...", "goroutine", "main.",
                                "exit"))


def test_short_messages_are_kept_as_they_are() -> None:
    assert abbreviate("exit status 1\n") == "exit status 1\n"
    status = Failure("p", Termination(1, "Error", "boom", NOW)).as_status(NOW)
    assert status.message == "boom"


def test_one_enormous_line_is_cut_but_bounded() -> None:
    message = "x" * 10_000 + "\nlast words"
    kept = abbreviate(message, 500)
    assert len(kept) <= 500
    assert kept.startswith("xxx")
    assert kept.endswith("last words")


def test_a_failed_fetch_is_reported_with_its_reason_and_the_pod_stays() -> None:
    fetching = observe_pod({
        "metadata": {"name": "x-abcdef0123-0", "uid": "u",
                     "annotations": {"plugin-operator.dev/spec-hash": "h1"}},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "fetch-plugin", "restartCount": 2, "state": {"running": {}},
            "lastState": {"terminated": {
                "exitCode": 1, "reason": "Error", "finishedAt": "2025-01-01T00:00:05Z",
                "message": "fetching http://op/artifacts/ab\nerror: connection refused\n"}}}]},
    })
    failure = latest_failure([fetching])
    assert failure is not None
    assert failure.as_status(NOW).reason == FETCH_FAILED
    reason, message = failure.event()
    assert reason == "FetchFailing"
    assert message.endswith("could not fetch the plugin (its init step retries with the "
                            "kubelet's backoff): error: connection refused")
    # A crash is still a crash.
    crash = Failure("p", Termination(2, "Error", "panic: boom\nexit status 2", NOW))
    assert crash.event() == ("BackendCrashed", "backend in pod p exited with code 2 "
                                               "(Error): exit status 2")
