"""Real processes for the verify/fetch command lines: the console script, the sample
plugin's own packaging script, hack/sign-plugin.sh, and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.samples import SignedSample, run

__all__ = ["CLI", "FIXTURES", "SignedSample", "run"]

REPO = Path(__file__).resolve().parents[3]
CLI = Path(sys.executable).with_name("plugin-operator")
FIXTURES = REPO.parent / "shared" / "fixtures" / "grafana-signed"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1; yields (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
