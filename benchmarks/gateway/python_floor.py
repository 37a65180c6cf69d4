"""The least a Python aiohttp (uvloop) + grpc.aio process can do per query: a floor for any
Python gateway built on these libraries, measured beside the gateway by bench_gateway.py.

For each ``POST /api/ds/query`` it reads the body, sends one QueryDataRequest serialized
beforehand (the bytes the benchmark's direct gRPC target sends) to the plugin with grpc.aio,
and writes ``{"results":{"A":{"status":200,"frames":[...]}}}`` with the frames as they came.
No parsing of the body, no authentication, no routing, no PluginContext, no metrics: what
is left is the cost of the libraries themselves. Not a product component.

    .venv/bin/python benchmarks/gateway/python_floor.py --target 127.0.0.1:50051 \\
        --request query.bin

prints ``listening on http://127.0.0.1:<port>`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc.aio
import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))

from plugin_operator.protocol.client import CHANNEL_OPTIONS
from plugin_operator.protocol.stubs import backend_pb2 as pb

QUERY_DATA = "/pluginv2.Data/QueryData"


def handler(channel: grpc.aio.Channel, request_bytes: bytes, deadline: float
            ) -> Callable[[web.Request], Awaitable[web.Response]]:
    # No request serializer: grpc.aio sends bytes as they are. The reply is parsed (upb, in
    # C): the frames have to be taken out of it somehow.
    call = channel.unary_unary(QUERY_DATA, request_serializer=None,
                               response_deserializer=pb.QueryDataResponse.FromString)

    async def query(request: web.Request) -> web.Response:
        await request.read()
        reply: pb.QueryDataResponse = await call(request_bytes, timeout=deadline)
        frames = reply.responses["A"].frames
        return web.Response(body=b'{"results":{"A":{"status":200,"frames":['
                            + b",".join(frames) + b"]}}}", content_type="application/json")

    return query


async def serve(target: str, request_bytes: bytes, bind: str, port: int,
                deadline: float) -> None:
    channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    app = web.Application()
    app.router.add_post("/api/ds/query", handler(channel, request_bytes, deadline))
    # As the gateway runs its server: no access log, the same backlog.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, bind, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0]
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    try:
        await asyncio.Event().wait()  # until the process is stopped
    finally:
        await runner.cleanup()
        await channel.close(None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the plugin's gRPC server")
    parser.add_argument("--request", type=Path, required=True,
                        help="file with a serialized pluginv2.QueryDataRequest")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="QueryData deadline (s)")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.target, args.request.read_bytes(), args.bind, args.port,
                         args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
