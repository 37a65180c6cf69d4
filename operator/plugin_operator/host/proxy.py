"""A generic gRPC proxy from the pod network to the plugin's socket.

Every method is forwarded as an opaque byte stream (gRPC frames look the same for unary
and streaming calls), with metadata, deadline, status and trailers, so RPCs added to
pluginv2 later pass through untouched. go-plugin's own services stay private to the host:
a remote caller must not shut the plugin down or steal its stdio.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

log = logging.getLogger("plugin_operator.host.proxy")

HOST_ONLY_SERVICES = ("/plugin.GRPCController/", "/plugin.GRPCStdio/", "/plugin.GRPCBroker/")
_HOP_BY_HOP = frozenset({"user-agent", "content-type", "te", "host", "grpc-timeout",
                         "grpc-encoding", "grpc-accept-encoding"})

CallObserver = Callable[[str, grpc.StatusCode], None]


def forwardable_metadata(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((key, value) for key, value in (metadata or ())
            if not key.startswith(":") and key not in _HOP_BY_HOP)


class ProxyHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, channel: grpc.aio.Channel, observe: CallObserver | None = None) -> None:
        self.channel = channel
        self.observe = observe or (lambda method, code: None)

    def service(self, handler_call_details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method: str = handler_call_details.method
        if method.startswith(HOST_ONLY_SERVICES):
            return None  # answered UNIMPLEMENTED by grpc

        async def forward(requests: AsyncIterator[bytes],
                          context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
            async for reply in self._forward(method, requests, context):
                yield reply

        return grpc.stream_stream_rpc_method_handler(forward)

    async def _forward(self, method: str, requests: AsyncIterator[bytes],
                       context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        call = self.channel.stream_stream(method, None, None)(
            requests, metadata=forwardable_metadata(context.invocation_metadata()),
            timeout=context.time_remaining())
        try:
            async for reply in call:
                yield reply
            trailers = await call.trailing_metadata()
            if trailers:
                context.set_trailing_metadata(forwardable_metadata(trailers))
            self.observe(method, grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            self.observe(method, exc.code())
            error_trailers = forwardable_metadata(exc.trailing_metadata())
            if error_trailers:
                context.set_trailing_metadata(error_trailers)
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()


async def start_proxy(upstream_target: str, bind: str, port: int,
                      observe: CallObserver | None = None
                      ) -> tuple[grpc.aio.Server, grpc.aio.Channel, int]:
    """Serve the proxy on ``bind:port`` (0 = any free port); returns the bound port."""
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.aio.insecure_channel(upstream_target, options=unlimited)
    server = grpc.aio.server(options=unlimited)
    server.add_generic_rpc_handlers([ProxyHandler(channel, observe)])
    bound = server.add_insecure_port(f"{bind}:{port}")
    if not bound:
        await channel.close(None)
        raise OSError(f"cannot listen for gRPC on {bind}:{port}")
    await server.start()
    return server, channel, bound
