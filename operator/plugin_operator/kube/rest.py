"""A small JSON REST layer over kubernetes_asyncio's authenticated HTTP client.

Objects travel as plain dictionaries, exactly as the apiserver writes them, so pure code
can build and read them without model classes. Errors become three exception types that
callers can act on: the object is missing, it conflicts (exists already, or changed under
us), or anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client

FIELD_MANAGER = "plugin-operator"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


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


class KubeApi:
    """Authenticated JSON requests to the apiserver."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    async def request(self, method: str, path: str, *,
                      query: Mapping[str, str | int | bool] | None = None,
                      body: Any = None, content_type: str = JSON,
                      request_timeout: float = 30.0) -> dict[str, Any]:
        params: Sequence[tuple[str, str]] = [
            (k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (query or {}).items()]
        response = await self.api_client.call_api(
            path, method, query_params=list(params),
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body, auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=request_timeout)
        try:
            raw = await response.read()
        finally:
            response.release()
        data: dict[str, Any] = json.loads(raw) if raw else {}
        if 200 <= response.status < 300:
            return data
        reason = str(data.get("reason") or response.reason or "")
        message = str(data.get("message") or raw[:500].decode(errors="replace"))
        if response.status == 404:
            raise NotFoundError(response.status, reason, message)
        if response.status == 409:
            raise ConflictError(response.status, reason, message)
        raise ApiError(response.status, reason, message)

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
