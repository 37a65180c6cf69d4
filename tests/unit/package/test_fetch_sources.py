"""``plugin-operator fetch`` with several copies of one archive: the operator's cache, then
the gateways' mirrors. Any copy with the pinned digest will do."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin_operator.package import cli
from plugin_operator.package.fetch import FetchError, first_of
from tests.unit.package.conftest import PLUGIN_JSON, zip_bytes


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """An HTTP server that holds nothing (a cache refilling after a restart)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"no such artifact")

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _args(sources: list[str], dest: Path, sha256: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [*sources, "--dest", str(dest), "--retry-seconds", "0", "--timeout", "2"]
    return parser.parse_args(argv + (["--sha256", sha256] if sha256 else []))


def test_the_first_copy_that_works_is_installed(tmp_path: Path, not_found_server: str) -> None:
    data = zip_bytes([("acme/plugin.json", PLUGIN_JSON, 0)])
    digest = hashlib.sha256(data).hexdigest()
    good = tmp_path / "mirror.zip"
    good.write_bytes(data)
    wrong = tmp_path / "wrong.zip"
    wrong.write_bytes(zip_bytes([("acme/plugin.json", b"{}", 0)]))
    sources = [f"{not_found_server}/artifacts/{digest}", str(wrong), str(good)]
    assert cli.run(_args(sources, tmp_path / "plugin", digest)) == 0
    assert (tmp_path / "plugin" / "plugin.json").read_bytes() == PLUGIN_JSON


def test_several_sources_need_a_pinned_digest(tmp_path: Path) -> None:
    assert cli.run(_args(["a.zip", "b.zip"], tmp_path / "plugin", None)) == 2


def test_all_failing_names_each_and_a_missing_copy_may_still_come(
        not_found_server: str) -> None:
    def fail(source: str) -> None:
        import urllib.request

        from plugin_operator.package.fetch import open_url
        open_url(urllib.request.Request(source), 2, f"downloading {source}")

    with pytest.raises(FetchError) as error:
        first_of([f"{not_found_server}/a", f"{not_found_server}/b"], fail)
    assert "/a failed: HTTP 404" in str(error.value)
    assert "/b failed" in str(error.value)
    # A cache answering 404 is refilling: worth another attempt.
    assert error.value.transient
    with pytest.raises(FetchError) as final:
        first_of(["x", "y"], lambda s: (_ for _ in ()).throw(FetchError(f"{s} refused")))
    assert not final.value.transient
