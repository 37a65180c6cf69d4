"""What a Plugin's backends say about it: phase, latest failure, Grafana compatibility."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from plugin_operator.controller.planner import ObservedPod, Termination
from plugin_operator.models.status import FailureStatus, Phase, timestamp
from plugin_operator.package.grafana_dependency import ConstraintError, check_grafana_dependency
from plugin_operator.package.plugin_json import PluginJson

# lastFailure.reason of a failed fetch by a pod's init step (the container's own reason is
# a bare "Error").
FETCH_FAILED = "FetchFailed"


# status.lastFailure.message: at most this many characters.
MESSAGE_LIMIT = 2048
# Of those, the opening lines get up to this share: a crash names its cause first (Go's
# "panic: ..." or "fatal error: ...", then the signal), and the lines the plugin printed last
# (often request logs) come after it.
_HEAD_SHARE = 0.375
_HEAD_LINES = 4


def abbreviate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` within ``limit`` characters: its first lines and its last lines, with a
    marker saying how much was left out between them. Short messages stay as they are."""
    if len(message) <= limit:
        return message
    head_budget = int(limit * _HEAD_SHARE)
    head = ""
    for line in message.splitlines(keepends=True)[:_HEAD_LINES]:
        if len(head) + len(line) > head_budget:
            if not head:  # one very long first line: keep its start
                head = line[:head_budget].rstrip("\n") + "\n"
            break
        head += line
    if not head.endswith("\n"):
        head += "\n"
    # The marker's length depends on the count it names; reserve room for the largest.
    marker_room = len(f"[... {len(message)} characters left out ...]\n")
    tail_budget = limit - len(head) - marker_room
    tail = message[len(message) - tail_budget:] if tail_budget > 0 else ""
    newline = tail.find("\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1:]  # start at a whole line
    omitted = len(message) - len(head.rstrip("\n")) - len(tail)
    result = f"{head}[... {max(omitted, 0)} characters left out ...]\n{tail}"
    return result[:limit]


@dataclass(frozen=True)
class Failure:
    pod: str
    termination: Termination

    @property
    def fetching(self) -> bool:
        return self.termination.reason == FETCH_FAILED

    def event(self) -> tuple[str, str]:
        """(reason, message) of the Warning event that reports it."""
        last = self.termination.message.splitlines()[-1] if self.termination.message else ""
        if self.fetching:
            return "FetchFailing", (f"pod {self.pod} could not fetch the plugin (its init "
                                    f"step retries with the kubelet's backoff)"
                                    + (f": {last}" if last else ""))
        return "BackendCrashed", (f"backend in pod {self.pod} exited with code "
                                  f"{self.termination.exit_code} ({self.termination.reason})"
                                  + (f": {last}" if last else ""))

    def as_status(self, now: datetime) -> FailureStatus:
        finished = self.termination.finished_at
        return FailureStatus(self.pod, self.termination.exit_code,
                             self.termination.reason or "Error",
                             abbreviate(self.termination.message, MESSAGE_LIMIT),
                             timestamp(finished or now))


def grafana_compatibility(plugin: PluginJson, grafana_version: str
                          ) -> tuple[bool, str, str]:
    """(compatible, reason, message) of plugin.json's grafanaDependency against the Grafana
    version plugins are told they run in (the operator's grafanaVersion)."""
    try:
        check = check_grafana_dependency(plugin, grafana_version)
    except ConstraintError as exc:
        return False, "GrafanaVersionUnreadable", (
            f"the operator's grafanaVersion {grafana_version!r} is not a version ({exc}); "
            "set the chart's operator.grafanaVersion to the version of Grafana you run")
    if check.reason == "ConstraintUnreadable":
        return False, check.reason, f"{check.message}; Grafana's catalog would refuse it"
    if not check.compatible:
        return False, check.reason, (
            f"{check.message}: the plugin may call APIs that version (GF_VERSION) lacks. "
            "Install a version of the plugin made for your Grafana, or set the chart's "
            "operator.grafanaVersion to the version of Grafana you run")
    return True, check.reason, check.message


def latest_failure(pods: Sequence[ObservedPod]) -> Failure | None:
    """The most recent backend termination that was not a clean exit, or failed fetch of
    the plugin by a pod's init step (which the kubelet retries: the pod stays)."""
    failures = [Failure(p.name, p.last_termination) for p in pods
                if p.last_termination is not None
                and (p.last_termination.exit_code != 0 or p.phase == "Failed")]
    failures += [Failure(p.name, replace(p.init_termination, reason=FETCH_FAILED))
                 for p in pods if p.alive and p.init_termination is not None
                 and p.init_termination.exit_code != 0]
    failures += [Failure(p.name, Termination(1, p.reason or "Failed", "", None))
                 for p in pods if p.phase == "Failed" and p.last_termination is None]
    failures += [Failure(p.name, p.in_pod_exit) for p in pods
                 if p.alive and p.in_pod_exit is not None]
    if not failures:
        return None
    return max(failures, key=lambda f: f.termination.finished_at.timestamp()
               if f.termination.finished_at else 0.0)


def backend_phase(wanted: int, ready: int, pods: Sequence[ObservedPod]) -> Phase:
    if ready >= wanted:
        return Phase.RUNNING
    troubled = any(p.restarts or p.terminal or p.waiting_reason in (
        "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")
        for p in pods)
    return Phase.DEGRADED if ready > 0 or troubled else Phase.STARTING


def phase_message(phase: Phase, wanted: int, ready: int, pods: Sequence[ObservedPod]) -> str:
    if phase is Phase.RUNNING:
        return f"{ready} of {wanted} backends ready"
    waiting = sorted({p.waiting_reason for p in pods if p.waiting_reason})
    detail = f" (containers waiting: {', '.join(waiting)})" if waiting else ""
    if phase is Phase.STARTING:
        return f"starting: {ready} of {wanted} backends ready{detail}"
    return f"{ready} of {wanted} backends ready{detail}; see status.lastFailure and events"
