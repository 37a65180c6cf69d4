"""Decide what to do with a Plugin's backend pods, from the pods that exist.

Level-based: given the wanted replicas and spec hash and the pods the apiserver reports,
return the pods to create and to delete. Nothing here remembers earlier passes, so a
restarted operator makes the same decision. Pod names are deterministic (spec hash plus
ordinal), so creating a pod that already exists fails instead of making a twin.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plugin_operator.models import naming

# How long a pod may stay in Terminating past its grace period before we force it; a pod
# on a lost node never finishes on its own, and its name blocks the replacement.
STUCK_TERMINATING_SECONDS = 30.0
_SLOT = re.compile(r"^(\d+)(s?)$")  # a backend pod name's last part: ordinal, spare mark


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    message: str
    finished_at: datetime | None


@dataclass(frozen=True)
class ObservedPod:
    name: str
    uid: str
    spec_hash: str
    ordinal: int | None
    phase: str
    ready: bool
    created: datetime | None
    deleting_since: datetime | None
    grace_seconds: int
    restarts: int
    restarts_counted: int
    reason: str  # the pod's own reason, e.g. Evicted
    last_termination: Termination | None
    waiting_reason: str = ""
    init_failures: int = 0  # times the init step (the archive fetch) failed in this pod
    init_termination: Termination | None = None
    in_pod_exit: Termination | None = None  # the last plugin exit the host restarted
    spare: bool = False  # named with its replica's second name (naming.pod_name)

    @property
    def terminal(self) -> bool:
        return self.phase in ("Failed", "Succeeded") and self.deleting_since is None

    @property
    def alive(self) -> bool:
        return not self.terminal and self.deleting_since is None


def _termination(state: Mapping[str, Any] | None) -> Termination | None:
    terminated = (state or {}).get("terminated")
    if not terminated:
        return None
    return Termination(exit_code=int(terminated.get("exitCode", 0)),
                       reason=str(terminated.get("reason", "")),
                       message=str(terminated.get("message", "")).strip(),
                       finished_at=parse_time(terminated.get("finishedAt")))


def _in_pod_exit(text: str | None) -> Termination | None:
    """The last exit a host reported (restart_reports.py wrote it; nothing else can)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        return Termination(int(data["exitCode"]), str(data["reason"]), str(data["message"]),
                           parse_time(data["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def annotation_count(text: str | None) -> int:
    """A count we keep in an annotation; anything else reads as 0."""
    return int(text) if text and text.isdigit() else 0


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    """Read what matters about a backend pod from its apiserver representation."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations = metadata.get("annotations") or {}
    name = str(metadata.get("name", ""))
    slot = _SLOT.match(name.rsplit("-", 1)[-1])
    container: Mapping[str, Any] = next((c for c in status.get("containerStatuses") or []
                      if c.get("name") == naming.BACKEND_CONTAINER), {})
    ready_condition: Mapping[str, Any] = next((c for c in status.get("conditions") or []
                            if c.get("type") == "Ready"), {})
    ready = ready_condition.get("status") == "True"
    # A running container's crash is in lastState; a pod that failed for good has it in state.
    termination = _termination(container.get("state")) or _termination(
        container.get("lastState"))
    fetch: Mapping[str, Any] = next((c for c in status.get("initContainerStatuses") or []
                                     if c.get("name") == naming.FETCH_CONTAINER), {})
    init_termination = _termination(fetch.get("lastState")) or _termination(fetch.get("state"))
    return ObservedPod(
        name=name,
        uid=str(metadata.get("uid", "")),
        spec_hash=str(annotations.get(naming.ANNOTATION_SPEC_HASH, "")),
        ordinal=int(slot[1]) if slot else None,
        spare=bool(slot and slot[2]),
        phase=str(status.get("phase", "Pending")),
        ready=ready,
        created=parse_time(metadata.get("creationTimestamp")),
        deleting_since=parse_time(metadata.get("deletionTimestamp")),
        grace_seconds=int(metadata.get("deletionGracePeriodSeconds") or 0),
        # The kubelet's container restarts and the host's own restarts of the plugin.
        restarts=int(container.get("restartCount", 0))
        + annotation_count(annotations.get(naming.ANNOTATION_IN_POD_RESTARTS)),
        restarts_counted=int(annotations.get(naming.ANNOTATION_RESTARTS, "0") or 0),
        reason=str(status.get("reason", "")),
        last_termination=termination,
        waiting_reason=str(((container.get("state") or {}).get("waiting") or {})
                           .get("reason", "")),
        init_failures=int(fetch.get("restartCount", 0)),
        init_termination=init_termination,
        in_pod_exit=_in_pod_exit(annotations.get(naming.ANNOTATION_IN_POD_LAST_EXIT)),
    )


class DeleteReason(enum.StrEnum):
    FAILED = "Failed"  # terminal: evicted, or its containers ended for good
    SCALED_DOWN = "ScaledDown"
    ROLLED = "Rolled"  # replaced by a pod of the new spec
    DUPLICATE = "Duplicate"  # both names of one replica alive: the younger goes
    STUCK = "StuckTerminating"


@dataclass(frozen=True)
class Deletion:
    pod: ObservedPod
    reason: DeleteReason
    force: bool = False


@dataclass(frozen=True)
class Plan:
    create: tuple[int, ...] = ()  # ordinals of pods to create with the wanted spec hash
    spare: frozenset[int] = frozenset()  # of those, the ones to create under the second name
    delete: tuple[Deletion, ...] = ()
    waiting_for_backoff: bool = False
    rolling: bool = False


def plan_pods(replicas: int, wanted_hash: str, pods: Sequence[ObservedPod], now: datetime,
              backoff_remaining: float = 0.0) -> Plan:
    """What to create and delete so that ``replicas`` ready pods of ``wanted_hash`` exist.

    A rollout surges one pod at a time and retires an old pod only for each new one that is
    ready. New pods wait while ``backoff_remaining`` is positive (after failures).
    """
    deletions: list[Deletion] = []
    for pod in pods:
        if pod.terminal:
            deletions.append(Deletion(pod, DeleteReason.FAILED, force=True))
        elif pod.deleting_since is not None:
            overdue = (now - pod.deleting_since).total_seconds()
            if overdue > pod.grace_seconds + STUCK_TERMINATING_SECONDS:
                deletions.append(Deletion(pod, DeleteReason.STUCK, force=True))

    alive = [p for p in pods if p.alive]
    new = [p for p in alive if p.spec_hash == wanted_hash]
    old = [p for p in alive if p.spec_hash != wanted_hash]
    # A pod that is going keeps its name until it is gone: its replica starts again under
    # the other name at once, or waits when both names are still held.
    names = {(p.ordinal, p.spare) for p in pods if p.spec_hash == wanted_hash}
    held = {p.ordinal for p in new}
    missing = [i for i in range(replicas)
               if i not in held and ((i, False) not in names or (i, True) not in names)]
    spare = frozenset(i for i in missing if (i, False) in names)

    for pod in new:
        if pod.ordinal is None or pod.ordinal >= replicas:
            deletions.append(Deletion(pod, DeleteReason.SCALED_DOWN))
    new_in_range = [p for p in new if p.ordinal is not None and p.ordinal < replicas]
    deletions += [Deletion(p, DeleteReason.DUPLICATE) for p in _duplicates(new_in_range, now)]
    new_in_range = [p for p in new_in_range
                    if not any(d.pod is p for d in deletions)]

    create: list[int] = []
    if not old:
        create = missing
    else:
        if all(p.ready for p in new_in_range) and missing:
            create = missing[:1]
        ready_new = sum(p.ready for p in new_in_range)
        retire = max(0, len(old) + ready_new - replicas)
        # Unready old pods go first: retiring them costs no availability.
        by_value = sorted(old, key=lambda p: (p.ready, p.created or now))
        deletions += [Deletion(p, DeleteReason.ROLLED) for p in by_value[:retire]]

    waiting = bool(create) and backoff_remaining > 0
    return Plan(create=() if waiting else tuple(create),
                spare=frozenset() if waiting else spare & set(create),
                delete=tuple(deletions), waiting_for_backoff=waiting, rolling=bool(old))


def _duplicates(pods: Sequence[ObservedPod], now: datetime) -> list[ObservedPod]:
    """Of the pods alive under both names of one replica, all but the ready or older one.
    The planner never creates both; only a create that an operator restart overtook could."""
    by_ordinal: dict[int | None, list[ObservedPod]] = {}
    for pod in pods:
        by_ordinal.setdefault(pod.ordinal, []).append(pod)
    extra: list[ObservedPod] = []
    for group in by_ordinal.values():
        keep = sorted(group, key=lambda p: (not p.ready, p.created or now))
        extra += keep[1:]
    return extra
