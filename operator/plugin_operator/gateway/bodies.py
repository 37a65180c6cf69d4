"""Reading request bodies within limits: per route, and for all requests together.

Handlers read a body only after the caller is authenticated (and, where the route allows,
authorized), so a caller without a token never makes the gateway hold a byte of it. A
declared ``Content-Length`` above the route's limit is refused before reading; a chunked
body is refused as soon as it passes the limit.
"""

from __future__ import annotations

from aiohttp import web

from .errors import GatewayError
from .limits import body_too_large

# Request state key: body bytes this request holds from the shared budget.
HELD = web.RequestKey("held_body_bytes", int)


class BodyBudget:
    """Bytes of request bodies held at once, by all requests together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, request: web.Request, size: int) -> None:
        if self.held + size > self.limit:
            raise GatewayError(503, "The gateway is holding too many request bodies at once; "
                                    "retry shortly", "request.bodiesBusy",
                               {"Retry-After": "1"})
        self.held += size
        request[HELD] = request.get(HELD, 0) + size

    def give_back(self, request: web.Request) -> None:
        """Called once the request is answered (the middleware's ``finally``)."""
        self.held -= request.pop(HELD)


def refuse_declared(request: web.Request, limit: int, setting: str) -> None:
    """413 before reading anything when ``Content-Length`` already says too much."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise body_too_large(declared, limit, request.path, setting)


async def read_body(request: web.Request, limit: int, setting: str,
                    budget: BodyBudget) -> bytes:
    """The whole body, at most ``limit`` bytes (``setting`` names the flag that sets it)."""
    refuse_declared(request, limit, setting)
    declared = request.content_length
    if declared == 0 or (declared is None and not request.body_exists):
        return b""
    if declared is not None:
        budget.take(request, declared)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, limit, request.path, setting)
        if declared is None:
            budget.take(request, len(chunk))
        chunks.append(chunk)
    # One chunk (the usual case) is returned as it is; join copies only several.
    return b"".join(chunks)
