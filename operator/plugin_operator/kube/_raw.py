"""Raw JSON requests through a kubernetes_asyncio ApiClient (auth, TLS and host from it).

The informer and the review calls work with plain JSON objects; going around the generated
models keeps them generic and avoids converting every object twice.
"""

# `timeout` is the HTTP request timeout handed to the client, not an ad-hoc limit.
# ruff: noqa: ASYNC109

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client

AUTH_SETTINGS = ["BearerToken"]


async def open_request(api: client.ApiClient, method: str, path: str,
                       query: Sequence[tuple[str, str]] = (), body: Any = None,
                       timeout: float | None = None) -> Any:
    """The raw (aiohttp) response; the caller reads and releases it. Raises ApiException
    for non-2xx answers, as the generated client does."""
    return await api.call_api(path, method, query_params=list(query),
                              header_params={"Accept": "application/json",
                                             "Content-Type": "application/json"},
                              body=body, auth_settings=AUTH_SETTINGS, _preload_content=False,
                              _request_timeout=timeout)


async def request_json(api: client.ApiClient, method: str, path: str,
                       query: Sequence[tuple[str, str]] = (), body: Any = None,
                       timeout: float | None = 30.0) -> Mapping[str, Any]:
    response = await open_request(api, method, path, query, body, timeout)
    try:
        data = await response.read()
    finally:
        response.release()
    decoded = json.loads(data)
    if not isinstance(decoded, dict):
        raise ValueError(f"{method} {path} answered {type(decoded).__name__}, not an object")
    return decoded
