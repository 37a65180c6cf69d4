"""Attacks on the front door leave the gateway's memory bounded: big bodies without a
token (in parallel, declared and chunked, some sent whole whatever the answer), bodies
over the route limits with a token, huge query counts and deeply nested JSON. The real
gateway process runs with its default limits and checks tokens with a stand-in apiserver;
its peak resident memory (VmHWM) is read from /proc before and after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.integration.gateway.conftest import GOOD_TOKEN, TokenReviews, pod_world, replicas
from tests.support.gateway_launcher import running_gateway

pytestmark = pytest.mark.integration
MiB = 1 << 20
CHUNK = b"x" * MiB
ATTACK_BYTES = 60 * MiB
# The gateway's peak memory may grow by at most this much under all the attacks together:
# request bodies held at once are capped (--max-body-bytes-in-flight, 64 MiB), parsing is
# one body at a time and costs at most ~12 times a 4 MiB query body, plus buffers. Measured:
# +100-120 MiB. Before the limits, one 60 MB body sent to /api/live/publish without a token
# cost 230-320 MiB, and a dozen of them in parallel several GiB.
BOUND_MIB = 160
QUERY = {"from": "now-1h", "to": "now",
         "queries": [{"refId": "A", "datasource": {"uid": "py-uid"}, "maxDataPoints": 5}]}


def memory_kib(pid: int, field: str) -> int:
    """VmHWM (peak resident set) or VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def send(port: int, path: str, *, token: str | None = None, size: int = ATTACK_BYTES,
               chunked: bool = False, body: bytes | None = None,
               whole: bool = False) -> int | None:
    """POST ``size`` bytes of junk (or ``body``); stops sending once the answer is there
    unless ``whole``. Returns the status, or None when the connection was closed first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        size = len(body)
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    status_line = asyncio.ensure_future(reader.readline())
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        while sent < size and (whole or not status_line.done()):
            piece = body[sent:sent + MiB] if body is not None else CHUNK[:size - sent]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            await writer.drain()
            sent += len(piece)
        if chunked and sent >= size and not status_line.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        async with asyncio.timeout(60):
            line = await status_line
        return int(line.split()[1]) if line else None
    except (ConnectionError, OSError, IndexError):
        return None
    finally:
        status_line.cancel()
        writer.close()


async def test_attacks_leave_memory_bounded(tmp_path: Path,
                                            token_reviews: TokenReviews) -> None:
    ((ip, host),) = await replicas(tmp_path, 1)
    args = ["--static-world", str(pod_world(tmp_path, [ip])),
            "--kubeconfig", str(token_reviews.kubeconfig)]
    try:
        async with running_gateway(None, tmp_path / "gw", args) as gateway, \
                aiohttp.ClientSession() as http:
            pid, port = gateway.process.pid, gateway.port
            auth = {"Authorization": f"Bearer {GOOD_TOKEN}"}

            async def good_query() -> int:
                async with http.post(f"{gateway.url}/api/ds/query", json=QUERY,
                                     headers=auth) as answer:
                    await answer.read()
                    return answer.status

            for _ in range(20):  # warm up: imports, channels, caches
                assert await good_query() == 200, gateway.output.read_text()[-2000:]
            baseline = memory_kib(pid, "VmHWM")

            paths = ["/api/ds/query", "/api/live/publish", "/api/streams/ds/py-uid/counter",
                     "/api/datasources/uid/py-uid/resources/echo"]
            unauthenticated = [send(port, paths[i % 4], token="garbage" if i % 3 else None,
                                    chunked=bool(i % 2), whole=i < 4) for i in range(12)]
            over_limit = [send(port, paths[i % 4], token=GOOD_TOKEN, chunked=bool(i % 2))
                          for i in range(8)]
            many = ('{"queries":[' + ",".join(['{"datasource":"py-uid"}'] * 160_000)
                    + "]}").encode()
            nested = b"[" * 100_000 + b"]" * 100_000
            deeper = b"[" * (2 * MiB - 1) + b"]" * (2 * MiB - 1)
            strings = ('{"queries":[{"datasource":"py-uid","x":['
                       + ",".join(['"ab"'] * 700_000) + "]}]}").encode()
            hostile = [send(port, "/api/ds/query", token=GOOD_TOKEN, body=b, chunked=c)
                       for b in (many, nested, deeper, strings) for c in (False, True)]
            answers = await asyncio.gather(*unauthenticated, *over_limit, *hostile)

            assert set(answers[:12]) <= {401, None}, answers[:12]
            assert 401 in answers[:12]
            assert set(answers[12:20]) <= {413, None}, answers[12:20]
            assert 413 in answers[12:20]
            # Count, nesting and parse checks refuse with 400; the string-heavy body is a
            # valid request that reaches the plugin.
            assert answers[20:26] == [400] * 6, answers[20:]
            assert answers[26:] == [200, 200], answers[26:]
            assert gateway.process.returncode is None
            peak = memory_kib(pid, "VmHWM")
            grown = (peak - baseline) / 1024
            print(f"gateway VmHWM {baseline / 1024:.0f} -> {peak / 1024:.0f} MiB "
                  f"(+{grown:.0f} MiB), VmRSS now {memory_kib(pid, 'VmRSS') / 1024:.0f} MiB")
            assert grown < BOUND_MIB, f"peak memory grew by {grown:.0f} MiB"
            async with http.get(f"{gateway.url}/readyz") as ready:
                assert ready.status == 200
            assert await good_query() == 200
            # The garbage token was reviewed once, however often it came.
            assert token_reviews.tokens.count("garbage") == 1
    finally:
        await host.stop()
