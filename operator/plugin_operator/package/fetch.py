"""Get a plugin archive from a URL, a local path or bytes, check its digest, install it.

The Kubernetes side (reading a ConfigMap's binaryData) stays with the caller: hand the
bytes to :func:`install_bytes`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import urlsplit

from plugin_operator.package.archive import ArchiveError, ExtractionLimits, extract_archive

_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 60.0
T = TypeVar("T")


class FetchError(ValueError):
    """The archive could not be fetched, or is not the one that was pinned. ``transient``
    marks failures that may pass on their own (no route yet, DNS, a server error)."""

    def __init__(self, message: str, *, transient: bool = False,
                 missing: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        # The server answered 404: a cache that does not hold the archive (yet).
        self.missing = missing


def retrying(action: Callable[[], T], seconds: float, report: Callable[[str], None]) -> T:
    """``action()``, tried again for up to ``seconds`` while it fails transiently."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            return action()
        except FetchError as exc:
            if not exc.transient or time.monotonic() + delay > deadline:
                raise
            report(f"retrying in {delay:g}s: {exc}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass(frozen=True)
class InstalledPackage:
    plugin_dir: Path
    sha256: str
    size: int


def normalise_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise FetchError(f"{value!r} is not a SHA-256 digest (64 hex digits)")
    return digest


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https", "file")


def _copy_hashing(source: IO[bytes], target: IO[bytes], max_bytes: int,
                  origin: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{origin} is larger than {max_bytes} bytes (limit "
                             "max_total_bytes); raise it if the plugin really is this large")
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest(), size


def open_url(request: urllib.request.Request, timeout: float, what: str) -> IO[bytes]:
    """``urlopen``, its failures as FetchError: refusals (4xx) are final, and no route, DNS,
    timeouts and server errors ``transient``. A server's plain-text reason is quoted."""
    try:
        response: IO[bytes] = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        detail = ""
        if exc.headers.get_content_type() == "text/plain":
            detail = exc.read(2000).decode("utf-8", errors="replace").strip()
        raise FetchError(f"{what} failed: HTTP {exc.code} {exc.reason}"
                         + (f": {detail}" if detail else ""),
                         transient=exc.code >= 500, missing=exc.code == 404) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{what} failed: {reason}", transient=True) from None
    return response


def _open_source(source: str, timeout: float) -> IO[bytes]:
    if not is_url(source):
        try:
            return Path(source).open("rb")
        except OSError as exc:
            raise FetchError(f"cannot read {source}: {exc.strerror}") from None
    return open_url(urllib.request.Request(source, headers={"User-Agent": "plugin-operator"}),
                    timeout, f"downloading {source}")


@contextmanager
def _downloaded(source: str, workdir: Path, expected: str | None, max_bytes: int,
                timeout: float) -> Iterator[tuple[Path, str, int]]:
    path = workdir / "archive"
    with _open_source(source, timeout) as stream, path.open("wb") as out:
        try:
            digest, size = _copy_hashing(stream, out, max_bytes, source)
        except OSError as exc:  # a reset or a stall half way: worth another attempt
            raise FetchError(f"reading {source} failed: {exc}", transient=True) from None
    _check_digest(digest, expected, source)
    yield path, digest, size


def _check_digest(actual: str, expected: str | None, origin: str) -> None:
    if expected is not None and actual != expected:
        raise FetchError(f"{origin} has SHA-256 {actual}, but {expected} was pinned; the "
                         "archive changed or the pin is wrong. Nothing was installed.")


def install(source: str, dest: Path, sha256: str | None = None,
            limits: ExtractionLimits | None = None,
            timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> InstalledPackage:
    """Fetch ``source`` (URL or local path), check the pinned digest, extract into ``dest``."""
    limits = limits or ExtractionLimits()
    expected = normalise_sha256(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.fetch-", dir=dest.parent) as work, \
            _downloaded(source, Path(work), expected, limits.max_total_bytes,
                        timeout) as (path, digest, size):
        extract_archive(path, dest, limits)
    return InstalledPackage(dest, digest, size)


def download(source: str, target: Path, sha256: str | None = None,
             max_bytes: int = ExtractionLimits().max_total_bytes,
             timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> tuple[str, int]:
    """Fetch ``source`` to ``target`` as is, checking the pinned digest; atomic: ``target``
    appears only when complete and correct. Returns (sha256, size)."""
    expected = normalise_sha256(sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.fetch-", dir=target.parent) as work, \
            _downloaded(source, Path(work), expected, max_bytes, timeout) as (path, digest, size):
        os.replace(path, target)
    return digest, size


def first_of(sources: Sequence[str], action: Callable[[str], T]) -> T:
    """``action(source)`` for each source in turn until one succeeds.

    For copies of one digest-pinned archive in several places (the operator's cache, the
    gateways' mirrors): whichever answers first with the right bytes wins. When all fail,
    the error names each source; it is transient when any failure may pass, including a
    cache that does not hold the archive yet (404: it is refilling after a restart)."""
    if not sources:
        raise FetchError("no source to fetch from")
    failures: list[FetchError] = []
    for source in sources:
        try:
            return action(source)
        except FetchError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise FetchError("; ".join(str(f) for f in failures),
                     transient=any(f.transient or f.missing for f in failures))


def install_bytes(data: bytes, dest: Path, sha256: str | None = None,
                  limits: ExtractionLimits | None = None) -> InstalledPackage:
    """Like :func:`install` for an archive already in memory (e.g. ConfigMap binaryData)."""
    limits = limits or ExtractionLimits()
    expected = normalise_sha256(sha256)
    digest = hashlib.sha256(data).hexdigest()
    _check_digest(digest, expected, "the archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.archive-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        extract_archive(Path(name), dest, limits)
    finally:
        os.unlink(name)
    return InstalledPackage(dest, digest, len(data))


__all__ = ["ArchiveError", "FetchError", "InstalledPackage", "download", "first_of", "install",
           "install_bytes", "open_url", "retrying"]
