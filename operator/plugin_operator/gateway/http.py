"""What the server and its route families share about a request: its per-request state and
the routing table's lookups in the gateway's error shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from plugin_operator.kube.reviews import Identity

from .errors import GatewayError
from .routing import RouteLookupError

# Per-request state: the authenticated caller and the metric labels of what it reached.
IDENTITY = web.RequestKey("identity", Identity)
PLUGIN_LABEL = web.RequestKey("plugin", str)
UID_LABEL = web.RequestKey("uid", str)


def lookup(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RouteLookupError as exc:
        raise GatewayError(exc.status, exc.message, "lookup.failed") from exc


def namespace(request: web.Request) -> str | None:
    return request.query.get("namespace") or None
