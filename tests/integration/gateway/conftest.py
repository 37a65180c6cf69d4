"""Gateway integration fixtures: real plugin hosts (Python and Go samples) behind a real
gateway process serving a static world that routes to them as sidecars on loopback."""

from __future__ import annotations

import random
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from plugin_operator.models import naming
from tests.support.gateway_launcher import (
    RunningGateway,
    datasource_object,
    gateway_pod_object,
    plugin_object,
    running_gateway,
    secret_object,
    write_world,
)
from tests.support.host_launcher import RunningHost, start_host

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


def backend_pod(name: str, ip: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {naming.LABEL_PLUGIN: "testdata"}},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


async def replicas(tmp_path: Path, count: int) -> list[tuple[str, RunningHost]]:
    """Hosts on distinct loopback addresses at the fixed backend port, like pods."""
    base = random.randint(2, 200)
    started = []
    for index in range(count):
        ip = f"127.{base}.{random.randint(1, 250)}.{index + 1}"
        host = await start_host(PYTHON_SAMPLE, tmp_path / f"replica-{index}",
                                ["--grpc-bind", ip, "--grpc-port", str(naming.GRPC_PORT)])
        started.append((ip, host))
    return started


def pod_world(tmp_path: Path, ips: list[str], *extra: dict[str, Any]) -> Path:
    """The Python sample as a Pod-mode Plugin with a pod per address and datasource py-uid
    (plus ``extra`` objects)."""
    return write_world(tmp_path / "world.yaml", [
        plugin_object("testdata", PYTHON_PLUGIN_ID, mode="Pod"),
        datasource_object("py", "py-uid", "testdata"),
        *[backend_pod(f"pod-{i}", ip) for i, ip in enumerate(ips)], *extra])


GOOD_TOKEN = "good-token"


@dataclass
class TokenReviews:
    """A stand-in apiserver that only reviews: GOOD_TOKEN is alice, allowed everything;
    any other token is rejected. Counts the reviews it answered."""

    kubeconfig: Path
    tokens: list[str] = field(default_factory=list)
    access: int = 0


@pytest.fixture
async def token_reviews(tmp_path: Path) -> AsyncIterator[TokenReviews]:
    reviews = TokenReviews(tmp_path / "kubeconfig")

    async def token_review(request: web.Request) -> web.Response:
        token = (await request.json())["spec"]["token"]
        reviews.tokens.append(token)
        status: dict[str, Any] = {"authenticated": False}
        if token == GOOD_TOKEN:
            status = {"authenticated": True, "user": {"username": "alice", "uid": "1"}}
        return web.json_response({"kind": "TokenReview", "status": status})

    async def access_review(request: web.Request) -> web.Response:
        reviews.access += 1
        return web.json_response({"kind": "SubjectAccessReview", "status": {"allowed": True}})

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", token_review)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", access_review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reviews.kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "reviews",
        "clusters": [{"name": "reviews", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "gateway", "user": {"token": "gateway-token"}}],
        "contexts": [{"name": "reviews", "context": {"cluster": "reviews", "user": "gateway"}}]}))
    try:
        yield reviews
    finally:
        await runner.cleanup()
