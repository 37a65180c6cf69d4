"""The sample plugins, packaged and signed the way a user would, for tests."""

from __future__ import annotations

import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.kube import REPO_ROOT


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=1800,
                          check=False, env={**os.environ, **(env or {})})


@dataclass(frozen=True)
class SignedSample:
    archive: Path
    public_key: Path


def package_testdata_python(work: Path) -> Path:
    """plugins/testdata-python packaged by its own script; returns the zip."""
    packaged = run(REPO_ROOT / "plugins" / "testdata-python" / "package.sh", work)
    assert packaged.returncode == 0, packaged.stderr
    return Path(packaged.stdout.strip().splitlines()[-1])


def build_sample_go(*targets: str) -> dict[str, Path]:
    """plugins/sample-go (and with ``"compat-go"`` the Go test tools, static binaries such as
    GRAFANA_CLIENT), built or taken from the cache."""
    built = run(REPO_ROOT / "hack" / "build-sample-go.sh", *(targets or ("sample-go",)))
    assert built.returncode == 0, f"hack/build-sample-go.sh failed:\n{built.stderr}"
    return {k: Path(v) for k, v in (line.split("=", 1) for line in built.stdout.splitlines()
                                    if "=" in line)}


def sign(archive: Path, work: Path) -> SignedSample:
    """Sign ``archive`` with a fresh test key kept in ``work``."""
    signed = run(REPO_ROOT / "hack" / "sign-plugin.sh", archive, "--output",
                 work / "signed.zip", env={"PLUGIN_OPERATOR_CACHE": str(work / "cache")})
    assert signed.returncode == 0, signed.stderr
    return SignedSample(work / "signed.zip", work / "cache" / "signing" / "test-signer.pub.asc")


def tamper(archive: Path, output: Path) -> Path:
    """A copy of a signed sample archive with its Python code changed after signing."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(output, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("testdata_plugin.py"):
                data += b"\n# changed after signing\n"
            target.writestr(item, data)
    return output
