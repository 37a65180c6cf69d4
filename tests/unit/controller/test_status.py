"""status.lastFailure keeps a crash's cause (its first lines) and its last lines."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin_operator.controller.planner import Termination
from plugin_operator.controller.status import MESSAGE_LIMIT, Failure, abbreviate

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
    kept = status["message"]
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
    assert status["message"] == "boom"


def test_one_enormous_line_is_cut_but_bounded() -> None:
    message = "x" * 10_000 + "\nlast words"
    kept = abbreviate(message, 500)
    assert len(kept) <= 500
    assert kept.startswith("xxx")
    assert kept.endswith("last words")
