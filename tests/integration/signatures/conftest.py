"""Real processes for the verify/fetch command lines: the console script, the sample
plugin's own packaging script, hack/sign-plugin.sh, and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CLI = Path(sys.executable).with_name("plugin-operator")
FIXTURES = REPO.parent / "shared" / "fixtures" / "grafana-signed"


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})


@dataclass(frozen=True)
class SignedSample:
    archive: Path
    public_key: Path


@pytest.fixture(scope="session")
def signed_testdata_python(tmp_path_factory: pytest.TempPathFactory) -> SignedSample:
    """plugins/testdata-python packaged by its own script and signed with a fresh test key."""
    work = tmp_path_factory.mktemp("signed-sample")
    packaged = run(REPO / "plugins" / "testdata-python" / "package.sh", work)
    assert packaged.returncode == 0, packaged.stderr
    archive = Path(packaged.stdout.strip().splitlines()[-1])
    signed = run(REPO / "hack" / "sign-plugin.sh", archive, "--output", work / "signed.zip",
                 env={"PLUGIN_OPERATOR_CACHE": str(work / "cache")})
    assert signed.returncode == 0, signed.stderr
    return SignedSample(work / "signed.zip", work / "cache" / "signing" / "test-signer.pub.asc")


@pytest.fixture(scope="session")
def signed_sample_go(tmp_path_factory: pytest.TempPathFactory) -> SignedSample:
    """plugins/sample-go built by hack/build-sample-go.sh (cached) and signed with a test key."""
    built = subprocess.run([str(REPO / "hack" / "build-sample-go.sh"), "sample-go"],
                           capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, f"hack/build-sample-go.sh failed:\n{built.stderr}"
    outputs = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    work = tmp_path_factory.mktemp("signed-sample-go")
    signed = run(REPO / "hack" / "sign-plugin.sh", outputs["SAMPLE_GO_ZIP"], "--output",
                 work / "signed.zip", env={"PLUGIN_OPERATOR_CACHE": str(work / "cache")})
    assert signed.returncode == 0, signed.stderr
    return SignedSample(work / "signed.zip", work / "cache" / "signing" / "test-signer.pub.asc")


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
