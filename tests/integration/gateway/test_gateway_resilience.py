"""Retries onto another replica, the in-flight limit, and draining on shutdown."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp
import pytest

from plugin_operator.gateway.launcher import (
    datasource_object,
    plugin_object,
    running_gateway,
    write_world,
)
from plugin_operator.host.launcher import RunningHost, start_host
from plugin_operator.models import naming
from tests.integration.gateway.conftest import PYTHON_PLUGIN_ID, PYTHON_SAMPLE

pytestmark = pytest.mark.integration


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


def pod_world(tmp_path: Path, ips: list[str]) -> Path:
    return write_world(tmp_path / "world.yaml", [
        plugin_object("testdata", PYTHON_PLUGIN_ID, mode="Pod"),
        datasource_object("py", "py-uid", "testdata"),
        *[backend_pod(f"pod-{i}", ip) for i, ip in enumerate(ips)]])


QUERY = {"from": "now-1h", "to": "now",
         "queries": [{"refId": "A", "datasource": {"uid": "py-uid"}, "maxDataPoints": 5}]}


async def test_a_backend_killed_under_load_loses_no_query(tmp_path: Path) -> None:
    hosts = await replicas(tmp_path, 2)
    try:
        async with running_gateway(pod_world(tmp_path, [ip for ip, _ in hosts]),
                                   tmp_path / "gw") as gateway, aiohttp.ClientSession() as http:
            statuses: list[int] = []
            under_load = asyncio.Event()

            async def client() -> None:
                for _ in range(40):
                    async with http.post(f"{gateway.url}/api/ds/query", json=QUERY) as answer:
                        statuses.append(answer.status)
                        if len(statuses) >= 30:
                            under_load.set()
                        await answer.read()

            load = [asyncio.create_task(client()) for _ in range(4)]
            await under_load.wait()
            hosts[0][1].process.kill()  # the replica dies without a goodbye
            await asyncio.gather(*load)
            assert statuses == [200] * 160
            async with http.get(f"{gateway.url}/metrics") as answer:
                metrics = await answer.text()
            assert "plugin_gateway_retries_total" in metrics
    finally:
        for _, host in hosts:
            await host.stop()


async def test_in_flight_limit_answers_503_with_retry_after(tmp_path: Path) -> None:
    hosts = await replicas(tmp_path, 1)
    slow = {"from": "now-1h", "to": "now", "queries": [
        {"refId": "A", "datasource": {"uid": "py-uid"}, "scenario": "slow", "seconds": 2}]}
    try:
        async with running_gateway(pod_world(tmp_path, [hosts[0][0]]), tmp_path / "gw",
                                   ["--max-in-flight-per-plugin", "1"]) as gateway, \
                aiohttp.ClientSession() as http:
            first = asyncio.create_task(http.post(f"{gateway.url}/api/ds/query", json=slow))
            while True:  # wait until the slow query holds the only slot
                async with http.get(f"{gateway.url}/metrics") as answer:
                    if f'plugin_gateway_in_flight_requests{{plugin="{PYTHON_PLUGIN_ID}"}} 1.0' \
                            in await answer.text():
                        break
                await asyncio.sleep(0.02)
            async with http.post(f"{gateway.url}/api/ds/query", json=QUERY) as answer:
                assert answer.status == 503
                assert answer.headers["Retry-After"] == "1"
                assert "in flight" in (await answer.json())["message"]
            response = await first
            assert response.status == 200
            response.release()
    finally:
        for _, host in hosts:
            await host.stop()


async def test_shutdown_drains_calls_in_flight(tmp_path: Path) -> None:
    hosts = await replicas(tmp_path, 1)
    slow = {"from": "now-1h", "to": "now", "queries": [
        {"refId": "A", "datasource": {"uid": "py-uid"}, "scenario": "slow", "seconds": 1}]}
    try:
        async with running_gateway(pod_world(tmp_path, [hosts[0][0]]),
                                   tmp_path / "gw") as gateway, aiohttp.ClientSession() as http:
            pending = asyncio.create_task(http.post(f"{gateway.url}/api/ds/query", json=slow))
            while True:
                async with http.get(f"{gateway.url}/metrics") as answer:
                    if f'plugin_gateway_in_flight_requests{{plugin="{PYTHON_PLUGIN_ID}"}} 1.0' \
                            in await answer.text():
                        break
                await asyncio.sleep(0.02)
            stopping = asyncio.create_task(gateway.stop())
            response = await pending
            assert response.status == 200
            assert json.loads(await response.read())["results"]["A"]["status"] == 200
            assert await stopping == 0
    finally:
        for _, host in hosts:
            await host.stop()
