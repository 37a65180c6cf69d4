"""Kubernetes Events about Plugins and DataSourceInstances, posted in the background."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from plugin_operator.kube.rest import ApiError, KubeApi, core_path

log = logging.getLogger(__name__)
COMPONENT = "plugin-operator"


def event_body(obj: Mapping[str, Any], type_: str, reason: str, message: str,
               now: datetime) -> dict[str, Any]:
    metadata = obj["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                           "name": metadata["name"], "namespace": metadata["namespace"],
                           "uid": metadata.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT, "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self._pending: set[asyncio.Task[None]] = set()

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event without waiting; reconciling never blocks on it."""
        body = event_body(obj, type_, reason, message, datetime.now(UTC))
        task = asyncio.create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            await self.kube.create(core_path(body["metadata"]["namespace"], "events"), body)
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("could not post event %s: %s", body["reason"], exc)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
