"""Retries onto another replica (only of calls that never reached a plugin), the in-flight
limit, and draining on shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.integration.gateway.conftest import PYTHON_PLUGIN_ID, pod_world, replicas
from tests.support.gateway_launcher import running_gateway

pytestmark = pytest.mark.integration


QUERY = {"from": "now-1h", "to": "now",
         "queries": [{"refId": "A", "datasource": {"uid": "py-uid"}, "maxDataPoints": 5}]}



async def one_in_flight(http: aiohttp.ClientSession, url: str, timeout_s: float = 30) -> None:
    """Wait (bounded) until the gateway counts one request in flight for the sample."""
    wanted = f'plugin_gateway_in_flight_requests{{plugin="{PYTHON_PLUGIN_ID}"}} 1.0'
    async with asyncio.timeout(timeout_s):
        while True:
            async with http.get(f"{url}/metrics") as answer:
                if wanted in await answer.text():
                    return
            await asyncio.sleep(0.02)

async def test_a_backend_killed_under_load_loses_only_the_calls_it_was_serving(
        tmp_path: Path) -> None:
    hosts = await replicas(tmp_path, 2)
    try:
        async with running_gateway(pod_world(tmp_path, [ip for ip, _ in hosts]),
                                   tmp_path / "gw") as gateway, aiohttp.ClientSession() as http:
            answers: list[tuple[int, str]] = []
            under_load = asyncio.Event()

            async def client(number: int) -> None:
                for sequence in range(40):
                    # Distinct queries: one that was in progress on the killed replica is
                    # quarantined, and must not take the others with it.
                    distinct = {**QUERY, "queries": [{**QUERY["queries"][0],  # type: ignore[index]
                                                      "client": number, "seq": sequence}]}
                    async with http.post(f"{gateway.url}/api/ds/query",
                                         json=distinct) as answer:
                        answers.append((answer.status, await answer.text()))
                        if len(answers) >= 30:
                            under_load.set()

            load = [asyncio.create_task(client(n)) for n in range(4)]
            await under_load.wait()
            hosts[0][1].process.kill()  # the replica dies without a goodbye
            await asyncio.gather(*load)
            lost = [body for status, body in answers if status != 200]
            # At most the calls in progress on the killed replica (one per client) fail,
            # each saying why; every call that could not reach it went to the other one.
            assert len(lost) <= 4, lost
            assert all("stopped while serving" in json.loads(body)["message"] for body in lost)
            assert len(answers) == 160
            async with http.get(f"{gateway.url}/metrics") as answer:
                metrics = await answer.text()
            assert "plugin_gateway_retries_total{" in metrics
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
            await one_in_flight(http, gateway.url)  # the slow query holds the only slot
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
            await one_in_flight(http, gateway.url)
            stopping = asyncio.create_task(gateway.stop())
            response = await pending
            assert response.status == 200
            assert json.loads(await response.read())["results"]["A"]["status"] == 200
            assert await stopping == 0
    finally:
        for _, host in hosts:
            await host.stop()
