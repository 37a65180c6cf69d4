"""Signed versions of the Python sample for catalog tests: the same plugin under other
info.version values, signed with a given key the way hack/sign-plugin.sh signs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.kube import REPO_ROOT
from tests.support.samples import run


def package_version(work: Path, version: str) -> Path:
    """plugins/testdata-python with info.version ``version``, packaged by its own script."""
    copy = work / f"testdata-python-{version}"
    shutil.copytree(REPO_ROOT / "plugins" / "testdata-python", copy,
                    ignore=shutil.ignore_patterns("dist", "__pycache__", "MANIFEST.txt"))
    manifest = json.loads((copy / "plugin.json").read_text())
    manifest["info"]["version"] = version
    (copy / "plugin.json").write_text(json.dumps(manifest, indent=2))
    packaged = run(copy / "package.sh", work / f"dist-{version}")
    assert packaged.returncode == 0, packaged.stderr
    return Path(packaged.stdout.strip().splitlines()[-1])


def sign_with(archive: Path, output: Path, key: Path) -> Path:
    """``archive`` signed with the private key ``key`` (created when missing) into ``output``."""
    signed = run(REPO_ROOT / "hack" / "sign-plugin.sh", archive, "--output", output,
                 "--key", key, "--generate-key")
    assert signed.returncode == 0, f"hack/sign-plugin.sh {archive} failed:\n{signed.stderr}"
    return output


def signed_versions(work: Path, key: Path, versions: tuple[str, ...]) -> dict[str, Path]:
    """The sample signed with ``key`` once per version."""
    return {version: sign_with(package_version(work, version),
                               work / f"testdata-{version}.zip", key)
            for version in versions}
