"""A small JSON REST layer over an authenticated aiohttp session.

Objects travel as plain dictionaries, exactly as the apiserver writes them, so pure code
can build and read them without model classes. Errors become three exception types that
callers can act on: the object is missing, it conflicts (exists already, or changed under
us), or anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

FIELD_MANAGER = "plugin-operator"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

Query = Mapping[str, str | int | bool] | Sequence[tuple[str, str]]


class ApiError(RuntimeError):
    """The apiserver refused a request; ``status`` and ``reason`` come from its Status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    """AlreadyExists or a resourceVersion/precondition conflict."""


def api_error(status: int, reason: str, raw: bytes) -> ApiError:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    reason = str(data.get("reason") or reason or "")
    message = str(data.get("message") or raw[:500].decode(errors="replace"))
    if status == 404:
        return NotFoundError(status, reason, message)
    if status == 409:
        return ConflictError(status, reason, message)
    return ApiError(status, reason, message)


def _params(query: Query | None) -> list[tuple[str, str]]:
    items = query.items() if isinstance(query, Mapping) else (query or ())
    return [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in items]


class KubeApi:
    """Authenticated JSON requests to one apiserver."""

    def __init__(self, session: aiohttp.ClientSession, server: str,
                 token: str | Callable[[], str] | None = None, *,
                 server_hostname: str | None = None) -> None:
        self.session = session
        self.server = server
        self._token = token
        self._server_hostname = server_hostname

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": JSON, "Content-Type": content_type}
        token = self._token() if callable(self._token) else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def open(self, method: str, path: str, *, query: Query | None = None,
                   body: Any = None, content_type: str = JSON,
                   request_timeout: float | None = 30.0) -> aiohttp.ClientResponse:
        """The raw response of a 2xx answer (the caller reads and releases it); raises
        :class:`ApiError` otherwise. Watches read it line by line."""
        response = await self.session.request(
            method, self.server + path, params=_params(query),
            data=None if body is None else json.dumps(body).encode(),
            headers=self._headers(content_type),
            timeout=aiohttp.ClientTimeout(total=request_timeout),
            server_hostname=self._server_hostname)
        if 200 <= response.status < 300:
            return response
        try:
            raw = await response.read()
        finally:
            response.release()
        raise api_error(response.status, response.reason or "", raw)

    async def request(self, method: str, path: str, *, query: Query | None = None,
                      body: Any = None, content_type: str = JSON,
                      request_timeout: float = 30.0) -> dict[str, Any]:
        response = await self.open(method, path, query=query, body=body,
                                   content_type=content_type, request_timeout=request_timeout)
        try:
            raw = await response.read()
        finally:
            response.release()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ApiError(response.status, "UnexpectedAnswer",
                           f"{method} {path} answered {type(data).__name__}, not an object")
        return data

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **query: str | int | bool) -> dict[str, Any]:
        return await self.request("GET", path, query=query)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except NotFoundError:
            return None

    async def list(self, path: str, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, str | int | bool] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", path, query={**query, "limit": 500})
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def apply(self, path: str, body: Mapping[str, Any], *,
                    field_manager: str = FIELD_MANAGER, force: bool = True) -> dict[str, Any]:
        """Server-side apply: ``body`` is everything this field manager wants to own."""
        return await self.request("PATCH", path, body=body, content_type=APPLY_PATCH,
                                  query={"fieldManager": field_manager, "force": force})

    async def delete(self, path: str, *, grace_period_seconds: int | None = None,
                     uid: str | None = None) -> None:
        """Delete; a missing object counts as deleted. ``uid`` guards against deleting a
        newer object that took the same name."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", path, body=body)
        except NotFoundError:
            return


def core_path(namespace: str, plural: str, name: str | None = None,
              subresource: str | None = None) -> str:
    return _join(f"/api/v1/namespaces/{namespace}/{plural}", name, subresource)


def group_path(group_version: str, namespace: str | None, plural: str,
               name: str | None = None, subresource: str | None = None) -> str:
    base = f"/apis/{group_version}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    return _join(f"{base}/{plural}", name, subresource)


def _join(base: str, name: str | None, subresource: str | None) -> str:
    if name is not None:
        base += f"/{name}"
    if subresource is not None:
        base += f"/{subresource}"
    return base
