"""Plugin restarts a backend's host did inside its container, reported to the operator.

The kubelet does not see them, so the host posts a report after each (see host/reports.py).
A report is believed only from the address of the backend pod it names, is bounded in
size and rate, and lands on the pod as annotations: the running count of in-pod restarts
over the pod's life and the last exit. The pod's watch event then brings its Plugin's pass,
which reads them like the kubelet's restart count and last termination (planner.py), so
``status.restarts``, ``lastFailure`` and the events count both kinds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plugin_operator.controller.planner import annotation_count, parse_time
from plugin_operator.kube.rest import ConflictError, KubeApi, NotFoundError, core_path
from plugin_operator.models import naming

MAX_REPORT_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 4096
# Per source address: a host reports once per restart, and restarts are rate-limited by its
# own backoff; this is for whatever else sends reports.
REPORTS_PER_WINDOW = 10
WINDOW_SECONDS = 10.0
_TRACKED_SOURCES = 10_000
_BOOT = re.compile(r"^[0-9a-f]{8,64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")


class ReportError(ValueError):
    """A report we will not apply; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LastExit:
    exit_code: int
    reason: str
    message: str
    time: str

    def as_json(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "reason": self.reason, "message": self.message,
                "time": self.time}


@dataclass(frozen=True)
class RestartReport:
    boot: str  # one life of the container: the host's count starts again in the next
    restarts: int
    last: LastExit | None


def parse_report(body: bytes) -> RestartReport:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReportError(400, f"the report is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(400, "the report is a JSON object {boot, restarts, last}")
    boot, restarts, last = data.get("boot"), data.get("restarts"), data.get("last")
    if not isinstance(boot, str) or not _BOOT.match(boot):
        raise ReportError(400, "boot: 8 to 64 lower-case hex digits naming the host's life")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or \
            not 0 <= restarts <= 1_000_000:
        raise ReportError(400, "restarts: a count from 0 to 1000000")
    if last is None:
        return RestartReport(boot, restarts, None)
    if not isinstance(last, dict):
        raise ReportError(400, "last: an object {exitCode, reason, message, time} or null")
    code, reason = last.get("exitCode"), last.get("reason")
    message, moment = last.get("message"), last.get("time")
    if not isinstance(code, int) or isinstance(code, bool) or not -1024 <= code <= 1024:
        raise ReportError(400, "last.exitCode: an integer exit code")
    if not isinstance(reason, str) or not reason.isalnum() or len(reason) > 64:
        raise ReportError(400, "last.reason: one word, at most 64 letters")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS:
        raise ReportError(400, f"last.message: a string of at most {MAX_MESSAGE_CHARS} "
                               "characters")
    try:
        valid_time = isinstance(moment, str) and parse_time(moment) is not None
    except ValueError:
        valid_time = False
    if not valid_time or len(str(moment)) > 40:
        raise ReportError(400, "last.time: an RFC 3339 time such as 2026-01-01T00:00:00Z")
    return RestartReport(boot, restarts, LastExit(code, reason, message, str(moment)))


def annotation_update(annotations: Mapping[str, str], report: RestartReport
                      ) -> dict[str, str] | None:
    """The annotations that add this report's new restarts to the pod's count; None when
    it brings nothing new (a repeat, or an older report of the same life)."""
    seen_boot, _, seen_text = annotations.get(naming.ANNOTATION_IN_POD_SEEN, "").partition("/")
    counted_before = annotation_count(seen_text) if seen_boot == report.boot else 0
    new = report.restarts - counted_before
    if new <= 0:
        return None
    total = annotation_count(annotations.get(naming.ANNOTATION_IN_POD_RESTARTS))
    update = {naming.ANNOTATION_IN_POD_RESTARTS: str(total + new),
              naming.ANNOTATION_IN_POD_SEEN: f"{report.boot}/{report.restarts}"}
    if report.last is not None:
        update[naming.ANNOTATION_IN_POD_LAST_EXIT] = json.dumps(report.last.as_json())
    return update


class SourceLimiter:
    """At most REPORTS_PER_WINDOW reports per source address per window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, source: str) -> bool:
        now = self.clock()
        if len(self._windows) > _TRACKED_SOURCES:
            self._windows = {k: v for k, v in self._windows.items()
                             if now - v[0] < WINDOW_SECONDS}
        start, count = self._windows.get(source, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, count = now, 0
        if count >= REPORTS_PER_WINDOW:
            return False
        self._windows[source] = (start, count + 1)
        return True


class RestartReports:
    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self.limiter = SourceLimiter()

    async def accept(self, namespace: str, pod_name: str, source: str, body: bytes) -> str:
        """Apply one report; raises ReportError with what is wrong."""
        if not _DNS_LABEL.match(namespace) or not _DNS_NAME.match(pod_name):
            raise ReportError(400, "the path names a namespace and a pod: "
                                   "/reports/pods/<namespace>/<pod>")
        if not self.limiter.allow(source):
            raise ReportError(429, f"more than {REPORTS_PER_WINDOW} reports from {source} in "
                                   f"{WINDOW_SECONDS:g} s")
        report = parse_report(body)
        path = core_path(namespace, "pods", pod_name)
        for _ in range(3):  # a conflict means the pod changed meanwhile: read it again
            try:
                pod = await self.kube.get(path)
            except NotFoundError:
                raise ReportError(404, f"no pod {namespace}/{pod_name}") from None
            meta = pod.get("metadata") or {}
            if naming.LABEL_PLUGIN not in (meta.get("labels") or {}) or \
                    (pod.get("status") or {}).get("podIP") != source:
                # The same answer either way: the caller learns nothing about other pods.
                raise ReportError(403, f"reports about {namespace}/{pod_name} are taken only "
                                       "from that backend pod's own address")
            update = annotation_update(meta.get("annotations") or {}, report)
            if update is None:
                return "nothing new\n"
            try:
                await self.kube.merge_patch(path, {"metadata": {
                    "annotations": update, "resourceVersion": meta.get("resourceVersion")}})
            except ConflictError:
                continue
            except NotFoundError:
                raise ReportError(404, f"no pod {namespace}/{pod_name}") from None
            return f"counted {update[naming.ANNOTATION_IN_POD_RESTARTS]} in-pod restarts\n"
        raise ReportError(409, "the pod kept changing; send the report again")
