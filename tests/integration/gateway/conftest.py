"""Gateway integration fixtures: real plugin hosts (Python and Go samples) behind a real
gateway process serving a static world that routes to them as sidecars on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugin_operator.gateway.launcher import (
    RunningGateway,
    datasource_object,
    gateway_pod_object,
    plugin_object,
    running_gateway,
    secret_object,
    write_world,
)
from plugin_operator.host.launcher import RunningHost, start_host

REPO = Path(__file__).resolve().parents[3]
PYTHON_SAMPLE = REPO / "plugins" / "testdata-python"
BUILD_SCRIPT = REPO / "hack" / "build-sample-go.sh"
PYTHON_PLUGIN_ID = "plugin-operator-testdata-datasource"
GO_PLUGIN_ID = "plugin-operator-sample-go-datasource"


@dataclass
class Stack:
    gateway: RunningGateway
    hosts: dict[str, RunningHost]

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="session")
def go_dist() -> Path:
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800,
                           check=False)
    assert built.returncode == 0, f"{BUILD_SCRIPT} failed:\n{built.stderr}"
    out = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    return Path(out["SAMPLE_GO_DIST"])


@pytest.fixture
async def stack(tmp_path: Path, go_dist: Path) -> AsyncIterator[Stack]:
    """Python sample (two replicas are not needed here) and Go sample behind a gateway."""
    python_host = await start_host(PYTHON_SAMPLE, tmp_path / "python-host")
    go_host = await start_host(go_dist, tmp_path / "go-host")
    hosts = {"testdata": python_host, "sample-go": go_host}
    try:
        world = write_world(tmp_path / "world.yaml", [
            plugin_object("testdata", PYTHON_PLUGIN_ID),
            plugin_object("sample-go", GO_PLUGIN_ID),
            secret_object("testdata-secret", {"apiKey": "s3cret"}),
            secret_object("go-secret", {"apiKey": "k"}),
            datasource_object("py", "py-uid", "testdata",
                              json_data={"endpoint": "http://example.invalid"},
                              secure_from={"apiKey": ("testdata-secret", "apiKey")}),
            datasource_object("py-nokey", "py-nokey-uid", "testdata"),
            datasource_object("go", "go-uid", "sample-go", json_data={"expectedApiKey": "k"},
                              secure_from={"apiKey": ("go-secret", "apiKey")}),
            gateway_pod_object({"testdata": python_host.grpc_port,
                                "sample-go": go_host.grpc_port}),
        ])
        async with running_gateway(world, tmp_path / "gateway") as gateway:
            yield Stack(gateway, hosts)
    finally:
        for host in hosts.values():
            await host.stop()
