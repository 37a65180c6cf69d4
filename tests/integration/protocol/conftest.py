import json
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TESTDATA = REPO / "plugins" / "testdata-python"


@pytest.fixture
def testdata_dir() -> Path:
    return TESTDATA


@pytest.fixture
def fake_plugin(tmp_path: Path):
    """A plugin directory whose executable is the given shell script body."""

    def make(body: str) -> Path:
        directory = tmp_path / "fake-plugin"
        directory.mkdir()
        (directory / "plugin.json").write_text(json.dumps({
            "id": "fake-datasource", "type": "datasource", "name": "Fake", "backend": True,
            "executable": "gpx_fake", "info": {"version": "1.0.0"}}))
        for arch in ("amd64", "arm64"):
            exe = directory / f"gpx_fake_linux_{arch}"
            exe.write_text("#!/bin/sh\n" + body + "\n")
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return directory

    return make
