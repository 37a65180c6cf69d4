"""Locator mode: point Grafana at a plugin server that runs somewhere else.

Grafana always starts the executable in the plugin's folder. An executable built with
Grafana's Go SDK (``backend.Manage``) first looks at ``GF_PLUGIN_GRPC_ADDRESS_<ID>``; when
it holds an address, the process serves nothing. It prints go-plugin's handshake line
``1|2|tcp|<address>|grpc``, so Grafana's go-plugin client dials that address instead, and
then idles, printing ``[<local time>] using address: <address>`` every 10 s. This module
does the same for plugins written with :mod:`plugin_operator.sdk`.

Rules taken from the Go SDK (``internal/standalone/standalone.go``, ``backend/serve.go``):

* ``<ID>`` is the plugin id upper-cased with every ``-`` replaced by ``_``.
* An empty variable is no address: the plugin serves itself, as it would without it.
* The address is passed on exactly as written; go-plugin resolves it (once) and dials TCP.
* The locator installs no signal handlers: SIGTERM and SIGINT end it the default way, and
  it ends when its stdout is gone (Grafana exited), like the Go locator's next write does.
  It does not watch stdin: go-plugin hands the plugin Grafana's own stdin, which is often
  ``/dev/null`` and so at end-of-file from the start.

The Go SDK also reads ``standalone.txt``/``pid.txt`` next to the executable (its debugging
workflow); this SDK deliberately supports only the variable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TextIO

log = logging.getLogger("plugin_operator.sdk.locator")

ADDRESS_ENV_PREFIX = "GF_PLUGIN_GRPC_ADDRESS_"
TICK_SECONDS = 10.0
# What the Go locator prints, whatever version the host offered.
LOCATOR_CORE_VERSION, LOCATOR_APP_VERSION = 1, 2


def _go_upper(text: str) -> str:
    """Upper-case like Go's strings.ToUpper: one character never becomes several."""
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in text)


def address_env_name(plugin_id: str) -> str:
    """``GF_PLUGIN_GRPC_ADDRESS_MYORG_MY_DATASOURCE`` for ``myorg-my-datasource``."""
    return ADDRESS_ENV_PREFIX + _go_upper(plugin_id).replace("-", "_")


def locator_address(plugin_id: str, env: Mapping[str, str]) -> str | None:
    """The address to hand Grafana, or None when the plugin must serve itself."""
    name = address_env_name(plugin_id)
    address = env.get(name)
    if address is None:
        return None
    if address == "":
        # The Go SDK logs "address is empty" and then serves normally.
        log.warning("%s is set but empty; serving the plugin in this process", name)
        return None
    return address


def handshake_line(address: str) -> str:
    """``1|2|tcp|<address>|grpc``: five fields, no certificate field (as the Go SDK)."""
    return f"{LOCATOR_CORE_VERSION}|{LOCATOR_APP_VERSION}|tcp|{address}|grpc"


def tick_line(address: str, now: datetime) -> str:
    return f"[{now:%Y-%m-%d %H:%M:%S}] using address: {address}"


def plugin_id_near(executable: str) -> str | None:
    """The ``id`` in the plugin.json beside ``executable`` (as launched, then resolved)."""
    candidates = [Path(os.path.abspath(executable)).parent, Path(executable).resolve().parent]
    for directory in dict.fromkeys(candidates):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((directory / "plugin.json").read_text())
            if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
                return str(data["id"])
    return None


def _reader_gone(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s; True as soon as the pipe behind ``fd`` has no reader."""
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return True
    if not is_pipe:
        time.sleep(timeout)
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR/POLLHUP are always reported; nothing else is asked
    events = poller.poll(max(0, int(timeout * 1000)))
    return any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, mask in events)


def _use_default_signals() -> None:
    """Like a Go program that installs no handlers: SIGINT/SIGTERM/SIGPIPE terminate it."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)


def _detach(stream: TextIO) -> int:
    """Nobody reads our stdout any more (Grafana is gone): leave quietly, with nothing left
    for the interpreter to flush into the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    return 0


def run_locator(address: str, *, out: TextIO | None = None, interval: float = TICK_SECONDS,
                now: Callable[[], datetime] = datetime.now,
                default_signals: bool = True, max_ticks: int | None = None) -> int:
    """Print the handshake for ``address``, then idle until stopped; returns the exit code.

    ``max_ticks`` (for tests) returns after that many periodic lines.
    """
    stream = sys.stdout if out is None else out
    if default_signals:
        _use_default_signals()
    log.debug("running the plugin locator", extra={"addr": address})
    try:
        stream.write(handshake_line(address) + "\n")
        stream.flush()
        try:
            fd: int | None = stream.fileno()
        except (OSError, ValueError):
            fd = None
        started, ticks = time.monotonic(), 0
        while max_ticks is None or ticks < max_ticks:
            # A schedule like Go's ticker: every interval from the start, no drift.
            wait = max(0.0, started + (ticks + 1) * interval - time.monotonic())
            if fd is None:
                time.sleep(wait)
            elif _reader_gone(fd, wait):
                return _detach(stream)
            ticks += 1
            stream.write(tick_line(address, now()) + "\n")
            stream.flush()
    except BrokenPipeError:
        return _detach(stream)
    return 0
