"""The pod planner: what to create and delete, from the pods that exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from plugin_operator.controller.planner import (
    DeleteReason,
    ObservedPod,
    Termination,
    observe_pod,
    plan_pods,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def pod(ordinal: int, spec_hash: str = "h1", *, ready: bool = True, phase: str = "Running",
        deleting: datetime | None = None, created_ago: int = 60,
        spare: bool = False) -> ObservedPod:
    mark = "s" if spare else ""
    return ObservedPod(name=f"p-{spec_hash}-{ordinal}{mark}",
                       uid=f"uid-{spec_hash}-{ordinal}{mark}",
                       spec_hash=spec_hash, ordinal=ordinal, phase=phase, ready=ready,
                       created=NOW - timedelta(seconds=created_ago),
                       deleting_since=deleting, grace_seconds=10, restarts=0,
                       restarts_counted=0, reason="", last_termination=None, spare=spare)


def test_creates_every_missing_replica_at_once() -> None:
    plan = plan_pods(3, "h1", [], NOW)
    assert plan.create == (0, 1, 2)
    assert plan.delete == ()


def test_steady_state_does_nothing() -> None:
    plan = plan_pods(2, "h1", [pod(0), pod(1)], NOW)
    assert plan.create == ()
    assert plan.delete == ()


def test_a_failed_pod_is_replaced_at_once_under_its_replicas_second_name() -> None:
    plan = plan_pods(2, "h1", [pod(0), pod(1, phase="Failed", ready=False)], NOW)
    assert [(d.pod.ordinal, d.reason, d.force) for d in plan.delete] == [
        (1, DeleteReason.FAILED, True)]
    # The failed pod holds its name until it is gone; the replacement needs no wait.
    assert plan.create == (1,)
    assert plan.spare == {1}


def test_a_going_pods_replacement_takes_the_free_name_and_never_a_third() -> None:
    going = pod(0, deleting=NOW - timedelta(seconds=1))
    plan = plan_pods(1, "h1", [going], NOW)
    assert (plan.create, plan.spare) == ((0,), {0})
    # Its replacement went too, before the first was gone: the first name is free again...
    going_spare = pod(0, deleting=NOW, spare=True)
    assert plan_pods(1, "h1", [going_spare], NOW).spare == frozenset()
    # ...and while both names are held, the replica waits for one.
    assert plan_pods(1, "h1", [going, going_spare], NOW).create == ()


def test_a_replica_alive_under_both_names_keeps_one() -> None:
    first, second = pod(0, created_ago=60), pod(0, created_ago=5, spare=True)
    plan = plan_pods(1, "h1", [first, second], NOW)
    assert [(d.pod.name, d.reason) for d in plan.delete] == [
        ("p-h1-0s", DeleteReason.DUPLICATE)]
    assert plan.create == ()


def test_a_deleted_pod_is_replaced_under_its_name() -> None:
    assert plan_pods(2, "h1", [pod(0)], NOW).create == (1,)


def test_backoff_holds_replacements() -> None:
    plan = plan_pods(2, "h1", [pod(0)], NOW, backoff_remaining=4.0)
    assert plan.create == ()
    assert plan.waiting_for_backoff


def test_scale_down_removes_the_highest_ordinals() -> None:
    plan = plan_pods(1, "h1", [pod(0), pod(1), pod(2)], NOW)
    assert sorted(d.pod.ordinal for d in plan.delete if d.pod.ordinal is not None) == [1, 2]
    assert {d.reason for d in plan.delete} == {DeleteReason.SCALED_DOWN}


def test_rollout_surges_one_pod_and_keeps_every_old_one() -> None:
    plan = plan_pods(2, "h2", [pod(0), pod(1)], NOW)
    assert plan.create == (0,)
    assert plan.delete == ()
    assert plan.rolling


def test_rollout_retires_one_old_pod_per_ready_new_pod() -> None:
    old = [pod(0), pod(1)]
    waiting = plan_pods(2, "h2", [*old, pod(0, "h2", ready=False)], NOW)
    assert waiting.create == ()
    assert waiting.delete == ()
    progressed = plan_pods(2, "h2", [*old, pod(0, "h2")], NOW)
    assert progressed.create == (1,)
    assert [d.reason for d in progressed.delete] == [DeleteReason.ROLLED]


def test_rollout_retires_unready_old_pods_first() -> None:
    plan = plan_pods(2, "h2", [pod(0), pod(1, ready=False), pod(0, "h2")], NOW)
    assert [d.pod.name for d in plan.delete] == ["p-h1-1"]


def test_pod_stuck_terminating_is_forced() -> None:
    stuck = pod(0, deleting=NOW - timedelta(seconds=120))
    recent = pod(1, deleting=NOW - timedelta(seconds=5))
    plan = plan_pods(2, "h1", [stuck, recent], NOW)
    assert [(d.pod.name, d.reason, d.force) for d in plan.delete] == [
        ("p-h1-0", DeleteReason.STUCK, True)]
    # Both replicas start again under their second names meanwhile.
    assert (plan.create, plan.spare) == ((0, 1), {0, 1})


def test_observe_pod_reads_the_kubelets_report() -> None:
    observed = observe_pod({
        "metadata": {"name": "x-abcdef0123-2", "uid": "u",
                     "annotations": {"plugin-operator.dev/spec-hash": "abc",
                                     "plugin-operator.dev/restarts-seen": "1"},
                     "creationTimestamp": "2026-11-20T11:00:00Z"},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastTransitionTime": "2026-11-20T11:01:00Z"}],
                   "containerStatuses": [{
                       "name": "plugin", "restartCount": 3,
                       "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                       "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                                                    "message": "boom\n",
                                                    "finishedAt": "2026-11-20T11:02:00Z"}}}]},
    })
    assert observed.ordinal == 2
    assert observed.ready
    assert observed.restarts == 3
    assert observed.restarts_counted == 1
    assert observed.waiting_reason == "CrashLoopBackOff"
    assert observed.last_termination == Termination(
        2, "Error", "boom", datetime(2026, 11, 20, 11, 2, tzinfo=UTC))


def test_a_pod_whose_fetch_failed_is_left_to_the_kubelets_retries() -> None:
    """A failed fetch is not this pod's fault (the sources were unreachable, or the DNS
    rule wrong, as issue 12 found): a new pod would fail the same way, and replacing it
    would throw away the kubelet's backoff. It is reported instead (test_status)."""
    observed = observe_pod({
        "metadata": {"name": "x-abcdef0123-1", "uid": "u",
                     "annotations": {"plugin-operator.dev/spec-hash": "h1"}},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "fetch-plugin", "restartCount": 1,
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "message": "error: Temporary failure in name "
                                                    "resolution\n"}}}]},
    })
    assert observed.init_failures == 1
    assert observed.init_termination is not None
    assert observed.init_termination.message.endswith("name resolution")
    plan = plan_pods(2, "h1", [pod(0), observed], NOW)
    assert plan.delete == ()
    assert plan.create == ()


def test_a_pod_still_fetching_for_the_first_time_is_left_alone() -> None:
    fetching = observe_pod({
        "metadata": {"name": "x-abcdef0123-0", "uid": "u",
                     "annotations": {"plugin-operator.dev/spec-hash": "h1"}},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "fetch-plugin", "restartCount": 0, "state": {"running": {}}}]},
    })
    assert plan_pods(1, "h1", [fetching], NOW).delete == ()


def test_observe_pod_reads_the_replica_and_which_of_its_names() -> None:
    first = observe_pod({"metadata": {"name": "sample-0123456789-2"}, "status": {}})
    second = observe_pod({"metadata": {"name": "sample-0123456789-2s"}, "status": {}})
    stray = observe_pod({"metadata": {"name": "sample-0123456789-2x"}, "status": {}})
    assert (first.ordinal, first.spare) == (2, False)
    assert (second.ordinal, second.spare) == (2, True)
    assert stray.ordinal is None
