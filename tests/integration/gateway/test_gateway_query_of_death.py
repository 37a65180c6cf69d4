"""A query that crashes its backend costs one backend, not every replica in turn, while
unrelated queries keep being answered (real gateway, three real Python sample backends)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.gateway.conftest import pod_world, replicas
from tests.support.gateway_launcher import datasource_object, running_gateway
from tests.support.host_launcher import RunningHost
from tests.support.wait import eventually_async

pytestmark = pytest.mark.integration
RANGE = {"from": "now-1h", "to": "now"}
GOOD = {**RANGE, "queries": [{"refId": "A", "datasource": {"uid": "py-uid"},
                              "maxDataPoints": 5}]}
# The Python sample exits (status 3) on a query once it has served crashAfterQueries: with 1,
# every query to this datasource crashes the backend that serves it.
DEADLY = {**RANGE, "queries": [{"refId": "A", "datasource": {"uid": "deadly-uid"},
                                "scenario": "table"}]}


def plugin_alive(host: RunningHost) -> bool:
    try:
        os.kill(host.plugin_pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{host.plugin_pid}/stat") as stat:  # an unreaped exit is a zombie
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_query_of_death_costs_one_backend_at_most(tmp_path: Path) -> None:
    hosts = await replicas(tmp_path, 3)
    deadly_ds = datasource_object("deadly", "deadly-uid", "testdata",
                                  json_data={"crashAfterQueries": 1})
    try:
        async with running_gateway(pod_world(tmp_path, [ip for ip, _ in hosts], deadly_ds),
                                   tmp_path / "gw") as gateway, aiohttp.ClientSession() as http:

            async def query(body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
                async with http.post(f"{gateway.url}/api/ds/query", json=body) as answer:
                    return (answer.status, json.loads(await answer.read()),
                            answer.headers.get("Retry-After", ""))

            for _ in range(6):  # every replica serves good queries
                assert (await query(GOOD))[0] == 200
            status, error, _ = await query(DEADLY)
            assert status == 502, error
            assert "stopped while serving this query" in error["message"]
            assert "not retried" in error["message"]
            assert sum(not plugin_alive(host) for _, host in hosts) == 1
            # The same query again (other refId, other key order) is refused, not replayed;
            # unrelated queries keep being answered by the replicas left.
            again = {"queries": [{"scenario": "table", "datasource": "deadly-uid",
                                  "refId": "Z"}], **RANGE}
            for body in (DEADLY, again) * 4:
                status, error, retry_after = await query(body)
                assert status == 503, error
                assert error["messageId"] == "query.quarantined"
                assert "kubectl logs --previous" in error["message"]
                assert 1 <= int(retry_after) <= 60
                good_status, good_answer, _ = await query(GOOD)
                assert good_status == 200, good_answer
            assert sum(not plugin_alive(host) for _, host in hosts) == 1
            async with http.get(f"{gateway.url}/readyz") as ready:
                assert ready.status == 200
    finally:
        for _, host in hosts:
            if host.process.returncode is None:
                await host.stop()


async def test_a_timed_out_query_is_not_sent_again_while_it_may_still_run(
        tmp_path: Path) -> None:
    """A query that ran out of time may still be running in its backend (a plugin need not
    stop when the call is cancelled): sent again at once, it would start a second run on
    another replica. It is refused until its deadline would have passed again; other
    queries are not."""
    hosts = await replicas(tmp_path, 2)
    slow = {**RANGE, "queries": [{"refId": "A", "datasource": {"uid": "py-uid"},
                                  "scenario": "slow", "seconds": 3}]}
    try:
        async with running_gateway(pod_world(tmp_path, [ip for ip, _ in hosts]),
                                   tmp_path / "gw", ["--call-timeout", "1"]) as gateway, \
                aiohttp.ClientSession() as http:

            async def query(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                async with http.post(f"{gateway.url}/api/ds/query", json=body) as answer:
                    return answer.status, json.loads(await answer.read())

            status, error = await query(slow)
            assert status == 504, error
            assert "refused for the next 1 s" in error["message"], error
            status, error = await query({**slow, "queries": [
                {**slow["queries"][0], "refId": "B"}]})  # the same query, another refId
            assert status == 503, error
            assert error["messageId"] == "query.stillRunning", error
            assert (await query(GOOD))[0] == 200
            # Once the deadline would have passed again, it is tried again.
            async def admitted_again() -> bool:
                return (await query(slow))[0] == 504  # sent to a backend, out of time again

            await eventually_async("the slow query admitted again", admitted_again,
                                   timeout_s=10, interval_s=0.2)
    finally:
        for _, host in hosts:
            if host.process.returncode is None:
                await host.stop()
