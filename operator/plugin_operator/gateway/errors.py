"""HTTP errors in Grafana's JSON shape, and how plugin call failures map onto them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc

from plugin_operator.protocol.errors import (
    MethodNotImplementedError,
    PluginError,
    PluginUnavailableError,
)


@dataclass
class GatewayError(Exception):
    """Ends a request with ``status`` and Grafana's ``{"message": ...}`` body."""

    status: int
    message: str
    message_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def body(self) -> bytes:
        payload: dict[str, object] = {"message": self.message}
        if self.message_id:
            payload["messageId"] = self.message_id
        payload["statusCode"] = self.status
        return json.dumps(payload).encode()


def utf8_text(value: str, where: str) -> str:
    """``value`` if it can travel to a plugin (protobuf strings are UTF-8), else a 400.

    aiohttp hands on header bytes that are not UTF-8 as lone surrogates; JSON can spell
    them as escapes (``"\\ud800"``)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise GatewayError(400, f"{where} is not valid UTF-8 text (it holds "
                                    f"{value[exc.start]!r}); send UTF-8", "request.badText") \
                from exc
    return value


def unauthorized(reason: str) -> GatewayError:
    return GatewayError(401, f"Unauthorized: {reason}", "auth.unauthorized",
                        {"WWW-Authenticate": 'Bearer realm="plugin-operator-gateway"'})


def forbidden(verb: str, resource: str, name: str, namespace: str) -> GatewayError:
    return GatewayError(
        403, f"You'll need additional permissions to perform this action. Permissions needed: "
             f"{verb} on {resource} {name!r} in namespace {namespace!r}", "auth.forbidden")


def overloaded(plugin: str, retry_after_seconds: int) -> GatewayError:
    return GatewayError(503, f"Too many requests in flight for plugin {plugin!r}; retry later",
                        "plugin.overloaded", {"Retry-After": str(retry_after_seconds)})


def no_ready_backend(plugin: str) -> GatewayError:
    return GatewayError(503, "Plugin unavailable", "plugin.unavailable",
                        {"Retry-After": "1"} | {"X-Plugin-Operator-Reason":
                                                f"no ready backend for plugin {plugin}"})


def from_plugin_error(exc: PluginError, *, other_message: str) -> GatewayError:
    """Grafana's mapping for resource, health and query calls (protocol.md §5.2, §5.4)."""
    if isinstance(exc, PluginUnavailableError) or exc.code is grpc.StatusCode.UNAVAILABLE:
        return GatewayError(503, "Plugin unavailable", "plugin.unavailable")
    if isinstance(exc, MethodNotImplementedError) or exc.code is grpc.StatusCode.UNIMPLEMENTED:
        return GatewayError(404, "Not found", "plugin.notImplemented")
    if exc.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return GatewayError(504, f"{other_message}: the plugin did not answer in time",
                            "plugin.timeout")
    if exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return GatewayError(503, f"{other_message}: plugin resources exhausted",
                            "plugin.resourceExhausted", {"Retry-After": "1"})
    return GatewayError(500, other_message, "plugin.error")


def result_status(status: int, error: str) -> int:
    """The status written for one query result: Grafana keeps 100-599 and reads anything
    else as 500 (the SDK's StatusUnknown), error or not (both SDKs send 200 for success)."""
    del error  # kept in the signature: the status does not depend on it, as in Grafana
    if 100 <= status <= 599:
        return status
    return 500
