"""Byte-for-byte forwarding from the pod's gRPC port to the plugin's own socket.

go-plugin puts the plugin's gRPC server on a unix socket (or loopback TCP), which nothing
outside the pod can reach. Parsing HTTP/2 and protobuf on the way, as a gRPC-level proxy
does, cost the host most of a core at a thousand calls a second and added its latency to
every call. Here the kernel moves the bytes (``splice`` through a pipe, no copy into
Python), so a call costs the host a few system calls and every RPC, pluginv2's and any
added later, passes through unchanged, status and trailers included.

Who may reach the plugin is decided by who may connect: the chart's NetworkPolicy admits
only the gateway and the operator to the gRPC port, and neither calls go-plugin's own
services (controller, stdio, broker), which the host alone uses over its private channel.
A sidecar's port is as reachable as its workload's pods: their own policy guards it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("plugin_operator.host.forwarder")

_CHUNK = 1 << 16
ByteCounter = Callable[[str, int], None]

NETWORK_UNIX, NETWORK_TCP = "unix", "tcp"
TO_PLUGIN = "to_plugin"
FROM_PLUGIN = "from_plugin"


def _connect(network: str, address: str) -> socket.socket:
    if network == NETWORK_UNIX:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = address
    else:
        host, _, port = address.rpartition(":")
        upstream = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_STREAM)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = (host.strip("[]"), int(port))
    try:
        upstream.connect(target)
    except OSError:
        upstream.close()
        raise
    return upstream


def _pump(source: socket.socket, sink: socket.socket, direction: str,
          count: ByteCounter) -> None:
    """Move bytes until ``source`` ends; then end ``sink``'s sending side (half close)."""
    pipe_out, pipe_in = os.pipe()
    try:
        while moved := os.splice(source.fileno(), pipe_in, _CHUNK):
            count(direction, moved)
            while moved:
                moved -= os.splice(pipe_out, sink.fileno(), moved)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
    finally:
        os.close(pipe_in)
        os.close(pipe_out)


class _Connection:
    """One caller's connection and its twin to the plugin, with a pump each way."""

    def __init__(self, caller: socket.socket, plugin: socket.socket, count: ByteCounter,
                 done: Callable[[_Connection], None]) -> None:
        self.sockets = (caller, plugin)
        self._count = count
        self._done = done
        self._running = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        caller, plugin = self.sockets
        for source, sink, direction in ((caller, plugin, TO_PLUGIN),
                                        (plugin, caller, FROM_PLUGIN)):
            threading.Thread(target=self._run, args=(source, sink, direction),
                             name=f"forward-{direction}", daemon=True).start()

    def _run(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            _pump(source, sink, direction, self._count)
        except OSError:
            self.abort()  # a reset on one side ends the other side too
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            for sock in self.sockets:
                sock.close()
            self._done(self)

    def abort(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Forwarder:
    """Accepts TCP connections on ``bind:port`` and joins each to a new connection to the
    plugin at (``network``, ``address``) from its go-plugin handshake."""

    def __init__(self, network: str, address: str, *, bind: str = "0.0.0.0", port: int = 0,
                 max_connections: int = 256, count: ByteCounter | None = None) -> None:
        if network not in (NETWORK_UNIX, NETWORK_TCP):
            raise ValueError(f"unsupported network {network!r} in the plugin's handshake; "
                             "expected unix or tcp")
        self.network = network
        self.address = address
        self.max_connections = max_connections
        self._count = count or (lambda direction, n: None)
        self._listener = socket.create_server(
            (bind, port), family=socket.AF_INET6 if ":" in bind else socket.AF_INET,
            backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept_loop, name="forward-accept",
                                           daemon=True)

    def start(self) -> int:
        self._accepting.start()
        return self.port

    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        while True:
            try:
                caller, _ = self._listener.accept()
            except OSError:
                return  # stop() shut the listener down
            caller.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._join(caller)

    def _join(self, caller: socket.socket) -> None:
        if self.open_connections() >= self.max_connections:
            log.warning("refusing a connection: %d already open", self.max_connections)
            caller.close()
            return
        try:
            plugin = _connect(self.network, self.address)
        except OSError as exc:
            # The caller sees its connection closed, which gRPC reports as UNAVAILABLE.
            log.warning("cannot reach the plugin at %s: %s", self.address, exc)
            caller.close()
            return
        connection = _Connection(caller, plugin, self._count, self._forget)
        with self._lock:
            self._connections.add(connection)
        connection.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def stop(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._accepting.is_alive():
            self._accepting.join(timeout=2.0)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.abort()
