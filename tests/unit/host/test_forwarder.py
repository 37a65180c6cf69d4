"""The host's byte forwarder, between loopback sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plugin_operator.host.forwarder import FROM_PLUGIN, TO_PLUGIN, Forwarder


@contextmanager
def shouting_plugin(path: Path) -> Iterator[str]:
    """A unix-socket server that reads until the caller half-closes, then answers with
    what it read in capitals and closes: it proves bytes and half-closes pass both ways."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # callers that were cut off
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
                conn.sendall(received.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield str(path)
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=2)


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as caller:
        caller.sendall(payload)
        caller.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := caller.recv(65536):
            answer += chunk
        return answer


@pytest.fixture
def counted() -> Counter[str]:
    return Counter()


def test_bytes_and_half_closes_pass_both_ways(tmp_path: Path, counted: Counter[str]) -> None:
    payload = b"frames " * 100_000  # several splice chunks each way
    with shouting_plugin(tmp_path / "plugin.sock") as address:
        forwarder = Forwarder("unix", address, bind="127.0.0.1",
                              count=lambda direction, n: counted.update({direction: n}))
        port = forwarder.start()
        try:
            assert _exchange(port, payload) == payload.upper()
            assert _exchange(port, b"again") == b"AGAIN"
        finally:
            forwarder.stop()
    assert counted == {TO_PLUGIN: len(payload) + 5, FROM_PLUGIN: len(payload) + 5}


def test_a_plugin_that_is_gone_closes_the_callers_connection(tmp_path: Path) -> None:
    forwarder = Forwarder("unix", str(tmp_path / "nobody-listens.sock"), bind="127.0.0.1")
    port = forwarder.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as caller:
            assert caller.recv(100) == b""
        assert forwarder.open_connections() == 0
    finally:
        forwarder.stop()


def test_stop_cuts_open_connections_and_refuses_new_ones(tmp_path: Path) -> None:
    with shouting_plugin(tmp_path / "plugin.sock") as address:
        forwarder = Forwarder("unix", address, bind="127.0.0.1")
        port = forwarder.start()
        caller = socket.create_connection(("127.0.0.1", port), timeout=5)
        caller.sendall(b"half a request")
        _wait(lambda: forwarder.open_connections() == 1)
        forwarder.stop()
        assert caller.recv(100) == b""  # cut without an answer
        caller.close()
        _wait(lambda: forwarder.open_connections() == 0)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_connections_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    with shouting_plugin(tmp_path / "plugin.sock") as address:
        forwarder = Forwarder("unix", address, bind="127.0.0.1", max_connections=1)
        port = forwarder.start()
        try:
            first = socket.create_connection(("127.0.0.1", port), timeout=5)
            _wait(lambda: forwarder.open_connections() == 1)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
                assert second.recv(100) == b""
            first.sendall(b"still served")
            first.shutdown(socket.SHUT_WR)
            assert first.recv(100) == b"STILL SERVED"
            first.close()
        finally:
            forwarder.stop()


def test_a_tcp_plugin_address_is_reached_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as plugin:
        forwarder = Forwarder("tcp", f"127.0.0.1:{plugin.getsockname()[1]}", bind="127.0.0.1")
        port = forwarder.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as caller:
                accepted, _ = plugin.accept()
                with accepted:
                    caller.sendall(b"ping")
                    assert accepted.recv(4) == b"ping"
                    accepted.sendall(b"pong")
                    assert caller.recv(4) == b"pong"
        finally:
            forwarder.stop()


def test_an_unknown_network_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported network 'udp'"):
        Forwarder("udp", "127.0.0.1:1", bind="127.0.0.1")


def _wait(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
