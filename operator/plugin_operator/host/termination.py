"""The message Kubernetes shows for a crashed plugin (terminationMessagePath)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable
from pathlib import Path

# Kubernetes keeps at most 4096 bytes of a termination message.
MAX_MESSAGE_BYTES = 4096


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


def host_exit_code(returncode: int) -> int:
    """Non-zero whatever the plugin did: a plugin is never supposed to exit by itself."""
    if returncode < 0:
        return 128 + -returncode
    return returncode or 1


def termination_message(headline: str, last_lines: Iterable[str]) -> str:
    """The headline, then as many of the newest lines as fit in Kubernetes' limit."""
    budget = MAX_MESSAGE_BYTES - len(headline.encode()) - 40
    kept: list[str] = []
    for line in reversed(list(last_lines)):
        size = len(line.encode()) + 1
        if size > budget:
            break
        kept.append(line)
        budget -= size
    if not kept:
        return headline
    return headline + "\nlast lines the plugin printed:\n" + "\n".join(reversed(kept))


def write_termination_message(path: Path, message: str) -> None:
    """Best effort: a missing /dev/termination-log outside Kubernetes must not hide the crash."""
    data = message.encode()[:MAX_MESSAGE_BYTES]
    with contextlib.suppress(OSError):
        path.write_bytes(data)
