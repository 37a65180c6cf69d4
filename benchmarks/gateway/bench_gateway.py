"""Gateway overhead and frame JSON encoder benchmark (issue 7, item 7).

Runs the Go sample plugin under ``plugin-operator host`` on loopback and, in the same run,
sends the same small query at fixed rates both directly to the plugin's gRPC endpoint and
through the gateway's ``POST /api/ds/query``. Open loop: a request is due every 1/rate s,
and latency is measured from when it was due, so a stalled target cannot hide its queue.
Then times our frame JSON encoder against the Go SDK's on the same 1,000,000-row frame.

    .venv/bin/python benchmarks/gateway/bench_gateway.py            # default: 5 s per rate
    .venv/bin/python benchmarks/gateway/bench_gateway.py --seconds 2 --rates 200 500

Writes benchmarks/results/gateway.md, gateway.csv and gateway-latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc.aio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from plugin_operator.gateway import context  # noqa: E402
from plugin_operator.gateway.launcher import (  # noqa: E402
    datasource_object,
    gateway_pod_object,
    plugin_object,
    running_gateway,
    write_world,
)
from plugin_operator.gateway.routing import Kind, RoutingTable  # noqa: E402
from plugin_operator.host.launcher import start_host  # noqa: E402
from plugin_operator.protocol import convert  # noqa: E402
from plugin_operator.protocol.client import CHANNEL_OPTIONS  # noqa: E402
from plugin_operator.protocol.frames import frame_from_arrow, frame_to_json  # noqa: E402
from plugin_operator.protocol.models import (  # noqa: E402
    DataQuery,
    FrameFormat,
    QueryDataRequest,
    TimeRange,
)
from plugin_operator.protocol.stubs import backend_pb2_grpc  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ERRORS: dict[str, int] = {}  # failure kinds, reported with the results
GO_PLUGIN_ID = "plugin-operator-sample-go-datasource"
QUERY_MODEL = {"refId": "A", "datasource": {"uid": "bench"}, "queryType": "randomWalk",
               "seed": 1, "maxDataPoints": 10}
BODY = {"from": "1700000000000", "to": "1700000600000", "queries": [QUERY_MODEL]}
PUBLISHED = [
    ("Knative activator + queue-proxy", "p95 +5-10 ms at 1,000 QPS (latency budget)"),
    ("Dapr sidecar pair", "p90 +1.4 ms, p99 +2.1 ms at 1,000 rps"),
]


@dataclass
class Run:
    target: str
    rate: int
    sent: int
    errors: int
    p50: float
    p90: float
    p99: float
    gateway_cpu: float  # cores used by the gateway process during the run
    backend_cpu: float  # cores used by host + plugin


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = [pid]
    for child in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = child.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(child.parent.name))
    return found


async def _open_loop(rate: int, seconds: float, call: object) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int(rate * seconds)

    async def one(due: float) -> None:
        nonlocal errors
        try:
            ok = await call()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - every failure counts as an error
            ERRORS[type(exc).__name__] = ERRORS.get(type(exc).__name__, 0) + 1
            ok = False
        if ok:
            latencies.append((loop.time() - due) * 1000)
        else:
            errors += 1

    tasks = []
    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return latencies, errors


async def measure(rates: list[int], seconds: float, work: Path) -> list[Run]:
    built = subprocess.run([str(REPO / "hack" / "build-sample-go.sh")], capture_output=True,
                           text=True, check=True, timeout=1800)
    out = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    host = await start_host(Path(out["SAMPLE_GO_DIST"]), work / "host")
    world = write_world(work / "world.yaml", [
        plugin_object("sample-go", GO_PLUGIN_ID),
        datasource_object("bench", "bench", "sample-go"),
        gateway_pod_object({"sample-go": host.grpc_port})])
    # The direct call carries the PluginContext the gateway would build.
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("sample-go", GO_PLUGIN_ID))
    table.apply(Kind.DATASOURCE, datasource_object("bench", "bench", "sample-go"))
    resolved = table.datasource("bench")
    ctx = context.datasource_context(context.ContextDefaults(), resolved.plugin,
                                     resolved.settings, None, "default")
    request = convert.query_data_request_to_proto(QueryDataRequest(
        ctx, [DataQuery("A", "randomWalk", 10, 1000,
                        TimeRange(1_700_000_000_000, 1_700_000_600_000),
                        json.dumps(QUERY_MODEL).encode())], format=FrameFormat.JSON))
    runs: list[Run] = []
    backend_pids = _children(host.process.pid)
    try:
        async with running_gateway(world, work / "gateway") as gateway:
            channel = grpc.aio.insecure_channel(host.grpc_target, options=CHANNEL_OPTIONS)
            stub = backend_pb2_grpc.DataStub(channel)
            # A bounded pool of kept-alive connections, as a real client library keeps.
            connector = aiohttp.TCPConnector(limit=128)
            async with aiohttp.ClientSession(connector=connector) as http:
                url = f"{gateway.url}/api/ds/query"
                payload = json.dumps(BODY).encode()
                headers = {"Content-Type": "application/json"}

                async def direct() -> bool:
                    reply = await stub.QueryData(request, timeout=10)
                    return bool(reply.responses["A"].frames) and not reply.responses["A"].error

                async def via_gateway() -> bool:
                    async with http.post(url, data=payload, headers=headers) as answer:
                        await answer.read()
                        if answer.status != 200:
                            key = f"HTTP {answer.status}"
                            ERRORS[key] = ERRORS.get(key, 0) + 1
                        return answer.status == 200

                for warm in (direct, via_gateway):  # connections and instances ready
                    await _open_loop(100, 1.0, warm)
                for rate in rates:
                    for name, call in (("direct gRPC", direct), ("gateway", via_gateway)):
                        gateway_before = _cpu_seconds([gateway.process.pid])
                        backend_before = _cpu_seconds(backend_pids)
                        started = time.monotonic()
                        latencies, errors = await _open_loop(rate, seconds, call)
                        elapsed = time.monotonic() - started
                        runs.append(Run(
                            name, rate, len(latencies) + errors, errors,
                            _percentile(latencies, 0.5), _percentile(latencies, 0.9),
                            _percentile(latencies, 0.99),
                            (_cpu_seconds([gateway.process.pid]) - gateway_before) / elapsed,
                            (_cpu_seconds(backend_pids) - backend_before) / elapsed))
                        print(runs[-1], ERRORS, flush=True)
            await channel.close(None)
    finally:
        await host.stop()
    return runs


@dataclass
class EncoderResult:
    rows: int
    json_bytes: int
    ours_seconds: float
    go_seconds: float
    identical: bool


def encoder_bench(rows: int, work: Path) -> EncoderResult:
    built = subprocess.run([str(REPO / "hack" / "build-sample-go.sh")], capture_output=True,
                           text=True, check=True, timeout=1800)
    out = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    arrow, go_json = work / "frame.arrow", work / "frame-go.json"
    ran = subprocess.run([out["FRAME_JSON_BENCH"], "--rows", str(rows), "--repeat", "5",
                          "--arrow-out", str(arrow), "--json-out", str(go_json)],
                         capture_output=True, text=True, check=True, timeout=600)
    go = json.loads(ran.stdout)
    frame = frame_from_arrow(arrow.read_bytes())
    best = float("inf")
    encoded = b""
    for _ in range(5):
        started = time.perf_counter()
        encoded = frame_to_json(frame)
        best = min(best, time.perf_counter() - started)
    identical = json.loads(encoded) == json.loads(go_json.read_bytes())
    return EncoderResult(rows, len(encoded), best, float(go["seconds"]), identical)


def write_results(runs: list[Run], encoder: EncoderResult, seconds: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "gateway.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["target", "rate_qps", "requests", "errors", "p50_ms", "p90_ms",
                         "p99_ms", "gateway_cpu_cores", "backend_cpu_cores"])
        for r in runs:
            writer.writerow([r.target, r.rate, r.sent, r.errors, f"{r.p50:.3f}",
                             f"{r.p90:.3f}", f"{r.p99:.3f}", f"{r.gateway_cpu:.3f}",
                             f"{r.backend_cpu:.3f}"])
    lines = [
        "# Gateway benchmark", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}. {seconds:g} s per rate and target, open loop, "
        "latency from each request's due time. Query: Go sample `randomWalk`, 10 points, "
        "JSON frames. Load generator (Python, aiohttp / grpc.aio), gateway, host and plugin "
        "all on the same loopback machine.", "",
        "| rate (qps) | target | requests | errors | p50 ms | p90 ms | p99 ms | gateway CPU "
        "(cores) | host+plugin CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.rate} | {r.target} | {r.sent} | {r.errors} | {r.p50:.2f} | "
                     f"{r.p90:.2f} | {r.p99:.2f} | {r.gateway_cpu:.2f} | "
                     f"{r.backend_cpu:.2f} |")
    lines += ["", "## Added latency (gateway minus direct, same run)", "",
              "| rate (qps) | p50 +ms | p90 +ms | p99 +ms | p50 ratio | p99 ratio | target "
              "met (p50 <= +0.5 ms, p99 <= +2 ms, no errors) |", "|---|---|---|---|---|---|---|"]
    for rate in sorted({r.rate for r in runs}):
        direct = next(r for r in runs if r.rate == rate and r.target == "direct gRPC")
        via = next(r for r in runs if r.rate == rate and r.target == "gateway")
        met = (via.p50 - direct.p50 <= 0.5 and via.p99 - direct.p99 <= 2.0
               and via.errors == 0)
        lines.append(f"| {rate} | {via.p50 - direct.p50:+.2f} | {via.p90 - direct.p90:+.2f} | "
                     f"{via.p99 - direct.p99:+.2f} | {via.p50 / direct.p50:.2f}x | "
                     f"{via.p99 / direct.p99:.2f}x | {'yes' if met else 'no'} |")
    lines += ["", "Published figures of comparable proxies, for scale:", ""]
    lines += [f"- {name}: {figure}" for name, figure in PUBLISHED]
    lines += ["", "## Frame JSON encoder", "",
              f"The same {encoder.rows:,}-row frame (time + float64, from the Go program's "
              "`--arrow-out`), best of 5 encodings.", "",
              "| encoder | seconds | MB/s |", "|---|---|---|",
              f"| ours (`frame_to_json`) | {encoder.ours_seconds:.3f} | "
              f"{encoder.json_bytes / encoder.ours_seconds / 1e6:.0f} |",
              f"| Go SDK `data.FrameToJSON` | {encoder.go_seconds:.3f} | "
              f"{encoder.json_bytes / encoder.go_seconds / 1e6:.0f} |", "",
              f"Ratio Go/ours: {encoder.go_seconds / encoder.ours_seconds:.2f} "
              "(> 1: ours is faster). Outputs decode to the same JSON: "
              f"{'yes' if encoder.identical else 'NO'}.", "",
              "Reproduce: `.venv/bin/python benchmarks/gateway/bench_gateway.py` "
              "(needs the `bench` extra for the plot).", ""]
    (RESULTS / "gateway.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'); no plot written")
        return
    figure, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=False)
    for axis, (label, attr) in zip(axes, (("p50", "p50"), ("p90", "p90"), ("p99", "p99")),
                                   strict=True):
        for target, marker in (("direct gRPC", "o"), ("gateway", "s")):
            chosen = [r for r in runs if r.target == target]
            axis.plot([r.rate for r in chosen], [getattr(r, attr) for r in chosen],
                      marker=marker, label=target)
        axis.set_title(f"{label} latency")
        axis.set_xlabel("request rate (qps)")
        axis.set_ylabel("ms")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "gateway-latency.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="duration per rate and target (bounded: at most 60)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="frame rows for the "
                        "encoder comparison")
    args = parser.parse_args()
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be between 0 and 60")
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        runs = asyncio.run(measure(args.rates, args.seconds, Path(tmp)))
        encoder = encoder_bench(args.rows, Path(tmp))
    write_results(runs, encoder, args.seconds)
    print((RESULTS / "gateway.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
