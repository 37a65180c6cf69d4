"""The host restarts an exited plugin at once a few times, then slower, and hands a crash
loop over to the kubelet; a plugin that ran a while starts again with a clean slate."""

from __future__ import annotations

from plugin_operator.host.reports import Exit, RestartLog
from plugin_operator.host.supervision import Decision, RestartPolicy, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_crash_loop_is_restarted_faster_than_grafana_then_slower_then_handed_over() -> None:
    clock = Clock()
    supervisor = Supervisor(clock, RestartPolicy(immediate=2, first_delay=0.1, max_delay=2.0,
                                                 give_up_after=6, window=60.0))
    decisions = []
    for _ in range(6):
        supervisor.started()
        clock.now += 0.5
        decisions.append(supervisor.exited())
    assert decisions == [Decision(True, 0.0), Decision(True, 0.0), Decision(True, 0.1),
                         Decision(True, 0.2), Decision(True, 0.4), Decision(False)]


def test_exits_far_apart_never_give_up() -> None:
    clock = Clock()
    supervisor = Supervisor(clock, RestartPolicy(give_up_after=3, window=60.0,
                                                 healthy_after=1000.0))
    for _ in range(20):
        supervisor.started()
        clock.now += 61.0
        assert supervisor.exited().restart


def test_a_plugin_that_ran_healthy_starts_with_a_clean_slate() -> None:
    clock = Clock()
    supervisor = Supervisor(clock, RestartPolicy(immediate=1, give_up_after=3,
                                                 healthy_after=10.0))
    for _ in range(2):
        supervisor.started()
        clock.now += 1.0
        supervisor.exited()
    supervisor.started()
    clock.now += 10.0  # ran long enough to count as healthy
    assert supervisor.exited() == Decision(True, 0.0)


def test_the_restart_log_reports_its_count_and_last_exit_per_container_life() -> None:
    log = RestartLog()
    assert log.report() == {"boot": log.boot, "restarts": 0, "last": None}
    log.record(Exit(-9, "plugin x (pid 7) killed by SIGKILL", 1767225600.0))
    log.record(Exit(2, "plugin x (pid 8) exited with code 2\npanic: boom", 1767225601.0))
    report = log.report()
    assert report["restarts"] == 2
    assert report["last"] == {"exitCode": 2, "reason": "Error",
                              "message": "plugin x (pid 8) exited with code 2\npanic: boom",
                              "time": "2026-01-01T00:00:01Z"}
    assert RestartLog().boot != log.boot
