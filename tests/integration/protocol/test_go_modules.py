"""Our Go modules' own tests, run by the suite: plugin-front's (a fake plugin behind the
front checks pass-through, refusals, per-call balancing and draining) and those of the
gateway benchmark's Go data plane (its parsing, encoding and answers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("module", ["tools/plugin-front", "benchmarks/gateway/dataplane"])
def test_go_tests_of(module: str) -> None:
    go = shutil.which("go")
    assert go, f"Go is needed to test {module} (install Go 1.26 or newer)"
    done = subprocess.run([go, "test", "-count=1", "./..."], cwd=REPO / module,
                          capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "CGO_ENABLED": "0",
                               "GOFLAGS": "-buildvcs=false -mod=readonly"})
    assert done.returncode == 0, f"go test failed:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
