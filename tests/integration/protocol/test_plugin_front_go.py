"""plugin-front's own Go tests (tools/plugin-front), run by the suite: a fake plugin behind
the front checks pass-through, refusals, per-call balancing and draining."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).resolve().parents[3] / "tools" / "plugin-front"


def test_go_tests_of_plugin_front() -> None:
    go = shutil.which("go")
    assert go, "Go is needed to test tools/plugin-front (install Go 1.26 or newer)"
    done = subprocess.run([go, "test", "-count=1", "./..."], cwd=SOURCE, capture_output=True,
                          text=True, timeout=900, check=False,
                          env={**os.environ, "CGO_ENABLED": "0",
                               "GOFLAGS": "-buildvcs=false -mod=readonly"})
    assert done.returncode == 0, f"go test failed:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
