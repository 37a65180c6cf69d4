"""``plugin-operator verify`` and ``fetch`` as a person and the plugin pods run them."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.integration.signatures.conftest import CLI, FIXTURES, SignedSample, run
from tests.support.samples import tamper

pytestmark = pytest.mark.integration


def test_verify_grafana_fixture_folder() -> None:
    result = run(CLI, "verify", FIXTURES / "test-app")

    assert result.returncode == 0, result.stderr
    assert "test-app 1.0.0 (app)" in result.stdout
    assert "signature: valid" in result.stdout
    assert "Grafana Labs (grafana)" in result.stdout
    assert "7e4d0c6a708866e7" in result.stdout


def test_verify_refuses_modified_fixture_with_code_and_advice() -> None:
    result = run(CLI, "verify", FIXTURES / "invalid-v2-missing-file" / "plugin")

    assert result.returncode == 1
    assert "REFUSED [signatureModified]" in result.stdout
    assert "missing: veryImportantFile" in result.stdout
    assert "Reinstall the unmodified package or re-sign it" in result.stdout


def test_unsigned_fixture_needs_allow_unsigned() -> None:
    plugin = FIXTURES / "unsigned-datasource" / "plugin"

    refused = run(CLI, "verify", plugin, "--json")
    allowed = run(CLI, "verify", plugin, "--allow-unsigned", "test", "--json")

    assert refused.returncode == 1
    assert json.loads(refused.stdout)["plugins"][0]["errorCode"] == "signatureMissing"
    assert allowed.returncode == 0
    assert json.loads(allowed.stdout)["allowed"] is True


def test_private_fixture_depends_on_app_url() -> None:
    plugin = FIXTURES / "valid-v2-pvt-signature" / "plugin"

    assert run(CLI, "verify", plugin, "--app-url", "http://localhost:3000").returncode == 0
    wrong = run(CLI, "verify", plugin, "--app-url", "http://localhost:1234", "--json")
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["plugins"][0]["signature"]["status"] == "invalid"


def test_signed_sample_plugin_zip_verifies_with_its_key(
        signed_testdata_python: SignedSample) -> None:
    result = run(CLI, "verify", signed_testdata_python.archive,
                 "--trusted-key", signed_testdata_python.public_key, "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    plugin = json.loads(result.stdout)["plugins"][0]
    assert plugin["pluginId"] == "plugin-operator-testdata-datasource"
    assert plugin["signature"]["status"] == "valid"
    assert plugin["signature"]["type"] == "private"


def test_signed_go_sample_plugin_zip_verifies_with_its_key(
        signed_sample_go: SignedSample) -> None:
    result = run(CLI, "verify", signed_sample_go.archive,
                 "--trusted-key", signed_sample_go.public_key, "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    plugin = json.loads(result.stdout)["plugins"][0]
    assert plugin["pluginId"] == "plugin-operator-sample-go-datasource"
    assert plugin["signature"]["status"] == "valid"


def test_signed_sample_plugin_is_invalid_without_its_key(
        signed_testdata_python: SignedSample) -> None:
    result = run(CLI, "verify", signed_testdata_python.archive)

    assert result.returncode == 1
    assert "REFUSED [signatureInvalid]" in result.stdout
    assert "--trusted-key" in result.stdout


def test_tampered_sample_plugin_zip_is_modified(signed_testdata_python: SignedSample,
                                                tmp_path: Path) -> None:
    tampered = tamper(signed_testdata_python.archive, tmp_path / "tampered.zip")

    result = run(CLI, "verify", tampered, "--trusted-key", signed_testdata_python.public_key)

    assert result.returncode == 1
    assert "REFUSED [signatureModified]" in result.stdout
    assert "changed: testdata_plugin.py" in result.stdout


def test_verify_and_fetch_over_http_with_pinned_digest(signed_testdata_python: SignedSample,
                                                      http_root: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    served, base = http_root
    shutil.copy(signed_testdata_python.archive, served / "plugin.zip")
    digest = hashlib.sha256((served / "plugin.zip").read_bytes()).hexdigest()
    url = f"{base}/plugin.zip"

    verified = run(CLI, "verify", url, "--sha256", digest,
                   "--trusted-key", signed_testdata_python.public_key)
    fetched = run(CLI, "fetch", url, "--sha256", digest, "--dest", tmp_path / "plugins" / "x")

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert fetched.returncode == 0, fetched.stderr
    installed = tmp_path / "plugins" / "x"
    assert (installed / "plugin.json").is_file()
    assert (installed / "MANIFEST.txt").is_file()
    assert (installed / "gpx_testdata_python_linux_amd64").stat().st_mode & 0o111


def test_fetch_refuses_wrong_digest_and_leaves_nothing(signed_testdata_python: SignedSample,
                                                       http_root: tuple[Path, str],
                                                       tmp_path: Path) -> None:
    served, base = http_root
    shutil.copy(signed_testdata_python.archive, served / "plugin.zip")
    (tmp_path / "plugins").mkdir()

    result = run(CLI, "fetch", f"{base}/plugin.zip", "--sha256", "1" * 64,
                 "--dest", tmp_path / "plugins" / "x")

    assert result.returncode == 1
    assert "was pinned" in result.stderr
    assert list((tmp_path / "plugins").iterdir()) == []


def test_missing_url_is_a_clear_input_error(http_root: tuple[Path, str]) -> None:
    _, base = http_root

    result = run(CLI, "verify", f"{base}/nope.zip")

    assert result.returncode == 2
    assert "HTTP 404" in result.stderr


def test_fetch_waits_for_a_server_that_is_not_up_yet(signed_testdata_python: SignedSample,
                                                     tmp_path: Path) -> None:
    """A pod's init step may run before its network is ready: it retries, then succeeds."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(signed_testdata_python.archive, served / "plugin.zip")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server: list[http.server.ThreadingHTTPServer] = []

    def start_later() -> None:
        time.sleep(2)
        server.append(http.server.ThreadingHTTPServer(("127.0.0.1", port), handler))
        server[0].serve_forever()

    threading.Thread(target=start_later, daemon=True).start()
    try:
        result = run(CLI, "fetch", f"http://127.0.0.1:{port}/plugin.zip", "--retry-seconds",
                     "30", "--dest", tmp_path / "x")
    finally:
        if server:
            server[0].shutdown()
    assert result.returncode == 0, result.stderr
    assert "retrying in" in result.stderr
    assert (tmp_path / "x" / "plugin.json").is_file()


def test_fetch_gives_up_on_a_stalled_attempt_and_tries_again(
        signed_testdata_python: SignedSample, tmp_path: Path) -> None:
    """A connection that never answers (a policy dropping packets, say) costs one short
    attempt, not the whole retry window."""
    archive = signed_testdata_python.archive.read_bytes()
    listener = socket.create_server(("127.0.0.1", 0))
    stalled: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if not stalled:
                stalled.append(conn)  # accepted, never answered
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % len(archive) + archive)

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = run(CLI, "fetch", f"http://127.0.0.1:{listener.getsockname()[1]}/plugin.zip",
                     "--timeout", "1", "--retry-seconds", "30", "--dest", tmp_path / "x")
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in stalled:
            conn.close()
    assert result.returncode == 0, result.stderr
    assert "timed out" in result.stderr
    assert (tmp_path / "x" / "plugin.json").is_file()


def test_fetch_does_not_retry_what_will_not_pass(http_root: tuple[Path, str],
                                                 tmp_path: Path) -> None:
    _, base = http_root
    result = run(CLI, "fetch", f"{base}/nope.zip", "--retry-seconds", "30",
                 "--dest", tmp_path / "x")
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
    assert "retrying" not in result.stderr
