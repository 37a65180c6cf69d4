"""Go side of the protocol tests: the Go sample plugin and grafana-client, a program that
plays Grafana with the Go SDK's own go-plugin client, pluginv2 clients and data package.

Both are built by ``hack/build-sample-go.sh`` (cached by a hash of their sources).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.go.go_support import (
    BUILD_SCRIPT,
    GO_PLUGIN_ID,
    VENV_BIN,
    ClientRun,
    ClientRunner,
    GoBuild,
    datasource,
)


@pytest.fixture(scope="session")
def go_build() -> GoBuild:
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800,
                           check=False)
    assert built.returncode == 0, f"{BUILD_SCRIPT} failed:\n{built.stderr}"
    out = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    return GoBuild(Path(out["SAMPLE_GO_DIST"]), Path(out["SAMPLE_GO_ZIP"]),
                   Path(out["GRAFANA_CLIENT"]), Path(out["FRAME_JSON_BENCH"]))


@pytest.fixture(scope="session")
def grafana_client(go_build: GoBuild) -> ClientRunner:
    """Run grafana-client on a plan against a launched executable or a gRPC address."""

    def run(calls: Sequence[Mapping[str, Any]], *, plugin: Path | None = None,
            addr: str | None = None, plugin_id: str = GO_PLUGIN_ID,
            ds: Mapping[str, Any] | None = None, env: Sequence[str] = ()) -> ClientRun:
        plan = {"pluginId": plugin_id, "datasource": ds or datasource(), "calls": list(calls)}
        args = [str(go_build.grafana_client), "--plan", "-"]
        args += ["--plugin", str(plugin)] if plugin else ["--addr", str(addr)]
        for item in env:
            args += ["--env", item]
        done = subprocess.run(args, input=json.dumps(plan), capture_output=True, text=True,
                              timeout=120, check=False,
                              env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
        assert done.returncode == 0, f"grafana-client failed:\n{done.stderr[-4000:]}"
        return ClientRun(json.loads(done.stdout), done.stderr)

    return run
