"""Plugin call errors: gRPC status plus Grafana's ``errorSource``, in both directions.

The Go SDK marks an error's source by returning status ``UNKNOWN`` with a
``google.rpc.ErrorInfo`` detail whose metadata holds ``errorSource``; Grafana reads it
back from the ``grpc-status-details-bin`` trailer. We build and parse that trailer with
wire-identical copies of the google.rpc messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from plugin_operator.protocol.models import ErrorSource
from plugin_operator.protocol.stubs import status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"
ERROR_SOURCE_KEY = "errorSource"


class PluginError(Exception):
    """A plugin call failed. ``code`` is the gRPC status; ``source`` who is to blame."""

    def __init__(self, message: str, *, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
                 source: ErrorSource = ErrorSource.PLUGIN, method: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.source = source
        self.method = method

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        return f"{where}{self.message} ({self.code.name}, source {self.source.value or 'none'})"


class PluginUnavailableError(PluginError):
    """The plugin cannot be reached (Grafana: "plugin unavailable", HTTP 503)."""


class MethodNotImplementedError(PluginError):
    """The plugin does not implement the RPC (Grafana: HTTP 404 / health UNKNOWN)."""


class DownstreamError(PluginError):
    """Raised by handlers when a system the plugin talks to failed."""

    def __init__(self, message: str, *, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message, code=code, source=ErrorSource.DOWNSTREAM)


def status_details(code: grpc.StatusCode, message: str, source: ErrorSource) -> bytes:
    """The ``grpc-status-details-bin`` value carrying ``errorSource`` like the Go SDK."""
    info = status_pb2.ErrorInfo(reason="PLUGIN_ERROR", metadata={ERROR_SOURCE_KEY: source.value})
    status = status_pb2.Status(code=code.value[0], message=message)
    detail = status.details.add()
    detail.type_url = ERROR_INFO_TYPE_URL
    detail.value = info.SerializeToString()
    return status.SerializeToString()


def error_source_from_trailers(trailers: Sequence[Any] | None) -> ErrorSource | None:
    """The errorSource in a status-details trailer, or None if there is none."""
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed trailer must not hide the real error
            return None
        for detail in status.details:
            if detail.type_url.endswith("google.rpc.ErrorInfo"):
                info = status_pb2.ErrorInfo()
                info.ParseFromString(detail.value)
                raw = info.metadata.get(ERROR_SOURCE_KEY)
                if raw is not None:
                    try:
                        return ErrorSource(raw)
                    except ValueError:
                        return ErrorSource.PLUGIN
    return None


def error_from_rpc(exc: grpc.aio.AioRpcError | grpc.RpcError, method: str = "") -> PluginError:
    """Map a failed call to our error types (source defaults to plugin)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    source = error_source_from_trailers(trailers) or ErrorSource.PLUGIN
    cls: type[PluginError] = PluginError
    if code is grpc.StatusCode.UNAVAILABLE:
        cls = PluginUnavailableError
    elif code is grpc.StatusCode.UNIMPLEMENTED:
        cls = MethodNotImplementedError
    return cls(details, code=code, source=source, method=method)
