"""Attach-port benchmark: what plugin-front adds to a call, and how it spreads calls.

Two real hosts run the Go sample plugin on loopback, as two replicas of one Plugin: A at
127.0.0.1 and B at 127.0.0.2 on the same local port, like two pods. A's attach port gets
``--peers 127.0.0.1:<port>,127.0.0.2:<port> --pod-ip 127.0.0.1``: a static list standing in
for the headless peers Service (each entry is looked up every second like the Service's
name; an IP literal resolves to itself), A's own entry replaced by its local plugin.

In the same run, open loop at a fixed rate (the Go load generator of benchmarks/gateway: a
call is due every 1/rate s and its latency counts from when it was due), the same
``randomWalk`` QueryData with the PluginContext the gateway benchmark sends, to three
targets:

1. direct: the plugin's own go-plugin socket (host A's plugin), no front;
2. local: host A's local port (front -> A's plugin), the gateway's path into a pod;
3. attach: host A's attach port over one connection (front -> A's plugin, or front ->
   B's local port -> B's plugin, round robin per call).

Each round runs the three targets in turn (the order rotates between rounds); the summary
takes the median over rounds. Which replica answered is counted from each host's /metrics
(the sample's ``sample_go_queries_total``), before and after each target.

    .venv/bin/python benchmarks/attach/bench_attach.py               # 500/s, 10 s, 3 rounds
    .venv/bin/python benchmarks/attach/bench_attach.py --rate 1000 --rounds 1

Writes benchmarks/results/attach.md, attach.csv and attach.png (with the gateway before/after
figures of benchmarks/attach/gateway_before_after.py when attach-gateway.csv exists).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))  # tests.support: the test harnesses the benchmarks share

from plugin_operator.gateway import context  # noqa: E402
from plugin_operator.gateway.routing import Kind, RoutingTable  # noqa: E402
from plugin_operator.host.front import FRONT_ENV  # noqa: E402
from plugin_operator.protocol import convert  # noqa: E402
from plugin_operator.protocol.models import (  # noqa: E402
    DataQuery,
    FrameFormat,
    QueryDataRequest,
    TimeRange,
)
from tests.support.gateway_launcher import datasource_object, plugin_object  # noqa: E402
from tests.support.host_launcher import RunningHost, start_host  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GO_PLUGIN_ID = "plugin-operator-sample-go-datasource"
# The gateway benchmark's query (benchmarks/gateway/bench_gateway.py), sent as it sends it.
QUERY_MODEL = {"refId": "A", "datasource": {"uid": "bench"}, "queryType": "randomWalk",
               "seed": 1, "maxDataPoints": 10}
SERVED = 'sample_go_queries_total{outcome="ok",query_type="randomWalk"}'
TARGETS = ("direct", "local", "attach")
LABELS = {"direct": "direct (plugin socket)", "local": "local port (front)",
          "attach": "attach port (front, balanced)"}
# Targets at 500 calls/s: the attach path over direct.
BUDGET_P50_MS, BUDGET_P99_MS = 0.3, 1.5


@dataclass
class Run:
    target: str
    round: int
    rate: int
    sent: int
    errors: int
    p50: float
    p90: float
    p99: float
    max: float
    served_a: int  # calls replica A's plugin answered during the run (warm-up included)
    served_b: int
    front_a_cpu: float  # cores = CPU seconds / wall seconds
    plugin_a_cpu: float
    front_b_cpu: float
    plugin_b_cpu: float
    hosts_cpu: float  # the two Python hosts (idle on the call path)
    load_cpu: float


def _script_output(*command: str | Path) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build_all() -> tuple[Path, Path, Path]:
    """(load generator, Go sample's plugin dir, plugin-front), each built or cached."""
    loadgen = _script_output(REPO / "benchmarks" / "gateway" / "build-go-tool.sh", "loadgen")
    sample = _script_output(REPO / "hack" / "build-sample-go.sh", "sample-go")
    front = _script_output(REPO / "hack" / "build-front.sh")
    values = dict(line.split("=", 1) for line in (loadgen + sample).splitlines() if "=" in line)
    return (Path(values["LOADGEN"]), Path(values["SAMPLE_GO_DIST"]),
            Path(front.strip().splitlines()[-1]))


def request_body() -> bytes:
    """QueryData with the PluginContext the gateway builds for the benchmark datasource."""
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
    body: bytes = request.SerializeToString()
    return body


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _served(host: RunningHost) -> int:
    with urllib.request.urlopen(host.http_url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(SERVED)))


def _pids(host: RunningHost) -> dict[str, int]:
    assert host.front_pid is not None
    return {"front": host.front_pid, "plugin": host.plugin_pid, "host": host.process.pid}


def measure_one(loadgen: Path, target: list[str], body: Path, rate: int, seconds: float,
                a: RunningHost, b: RunningHost, name: str, round_no: int) -> Run:
    pids = {"a": _pids(a), "b": _pids(b)}
    cpu_before = {(r, k): _cpu_seconds(p) for r, d in pids.items() for k, p in d.items()}
    served_before = (_served(a), _served(b))
    command = [str(loadgen), *target, "-body", str(body), "-rate", str(rate),
               "-duration", f"{seconds}s", "-warmup", "1s"]
    started = time.monotonic()
    before = os.times()
    ran = subprocess.run(command, capture_output=True, text=True, check=False,
                         timeout=seconds + 120)
    after = os.times()
    elapsed = time.monotonic() - started
    if ran.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(target)} failed:\n{ran.stderr}")
    report: dict[str, Any] = json.loads(ran.stdout)
    cpu = {(r, key): (_cpu_seconds(pid) - cpu_before[(r, key)]) / elapsed
           for r, d in pids.items() for key, pid in d.items()}
    served_after = (_served(a), _served(b))
    load = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    if report.get("error_kinds"):
        print(f"{name}: errors {report['error_kinds']}", flush=True)
    return Run(name, round_no, rate, int(report["sent"]), int(report["errors"]),
               float(report["p50_ms"]), float(report["p90_ms"]), float(report["p99_ms"]),
               float(report["max_ms"]), served_after[0] - served_before[0],
               served_after[1] - served_before[1], cpu[("a", "front")], cpu[("a", "plugin")],
               cpu[("b", "front")], cpu[("b", "plugin")],
               cpu[("a", "host")] + cpu[("b", "host")], load / elapsed)


def _free_port_on_both() -> int:
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.2", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


async def measure(rate: int, seconds: float, rounds: int, work: Path, loadgen: Path,
                  plugin_dist: Path) -> list[Run]:
    port = _free_port_on_both()
    peers = f"127.0.0.1:{port},127.0.0.2:{port}"
    hosts: list[RunningHost] = []
    for name, ip in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
        hosts.append(await start_host(plugin_dist, work / name, [
            "--grpc-bind", ip, "--grpc-port", str(port), "--attach-port", "0",
            "--peers", peers, "--pod-ip", ip]))
    a, b = hosts
    body = work / "query.bin"
    body.write_bytes(request_body())
    assert a.plugin_target is not None
    targets = {"direct": ["-grpc", a.plugin_target], "local": ["-grpc", a.grpc_target],
               "attach": ["-grpc", a.attach_target]}
    runs: list[Run] = []
    try:
        await asyncio.sleep(2)  # A's balancer connects to B (peers are looked up every second)
        for round_no in range(rounds):
            order = TARGETS[round_no % 3:] + TARGETS[:round_no % 3]
            for name in order:
                run = await asyncio.to_thread(measure_one, loadgen, targets[name], body, rate,
                                              seconds, a, b, name, round_no + 1)
                runs.append(run)
                print(run, flush=True)
    finally:
        for host in hosts:
            await host.stop()
    return runs


def _median(runs: list[Run], target: str, attr: str) -> float:
    return statistics.median(float(getattr(r, attr)) for r in runs if r.target == target)


def _added(runs: list[Run], target: str, attr: str) -> float:
    """Median over rounds of (target - direct) in the same round."""
    rounds = sorted({r.round for r in runs})
    by = {(r.target, r.round): r for r in runs}
    return statistics.median(float(getattr(by[(target, n)], attr))
                             - float(getattr(by[("direct", n)], attr)) for n in rounds)


def _gateway_section() -> list[str]:
    path = RESULTS / "attach-gateway.csv"
    if not path.exists():
        return ["", "## The gateway path before and after", "",
                "Not measured in this run: `benchmarks/attach/gateway_before_after.py` writes "
                "`attach-gateway.csv`, shown here when present.", ""]
    with path.open() as source:
        rows = list(csv.DictReader(source))
    lines = ["", "## The gateway path before and after (benchmarks/gateway)", "",
             "`benchmarks/attach/gateway_before_after.py`: benchmarks/gateway "
             "(`--latency-only`, the same 10-point randomWalk, open loop, 10 s per rate and "
             "target after 1 s of warm-up) for the tree before plugin-front (the host's "
             "splice forwarder on port 10000) and for this tree (plugin-front on port "
             "10000), alternating runs on the same machine in the same hour. `direct gRPC` "
             "is a gRPC call to the host's port 10000 (the pod's port the gateway calls); "
             "`gateway` is `POST /api/ds/query` through the gateway to that port.", "",
             "| tree | run | rate (qps) | target | requests | errors | p50 ms | p90 ms | "
             "p99 ms | gateway CPU | host+plugin CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['tree']} | {row['run']} | {row['rate_qps']} | {row['target']} "
                     f"| {row['requests']} | {row['errors']} | {float(row['p50_ms']):.2f} | "
                     f"{float(row['p90_ms']):.2f} | {float(row['p99_ms']):.2f} | "
                     f"{float(row['gateway_cpu_cores']):.2f} | "
                     f"{float(row['backend_cpu_cores']):.2f} |")
    lines += ["", "Medians over the runs of each tree:", "",
              "| rate (qps) | target | p50 before | p50 after | p99 before | p99 after | "
              "p50 change | p99 change |", "|---|---|---|---|---|---|---|---|"]
    for rate in sorted({int(r["rate_qps"]) for r in rows}):
        for target in ("direct gRPC", "gateway"):
            def med(tree: str, column: str, rate: int = rate, target: str = target) -> float:
                return statistics.median(float(r[column]) for r in rows
                                         if r["tree"] == tree and int(r["rate_qps"]) == rate
                                         and r["target"] == target)
            p50b, p50a = med("before", "p50_ms"), med("after", "p50_ms")
            p99b, p99a = med("before", "p99_ms"), med("after", "p99_ms")
            lines.append(f"| {rate} | {target} | {p50b:.2f} | {p50a:.2f} | {p99b:.2f} | "
                         f"{p99a:.2f} | {p50a - p50b:+.2f} | {p99a - p99b:+.2f} |")
    return [*lines, ""]


def write_results(runs: list[Run], rate: int, seconds: float,
                  load_before: tuple[float, float, float]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "attach.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        names = [f.name for f in fields(Run)]
        writer.writerow(names)
        for run in runs:
            writer.writerow([f"{v:.3f}" if isinstance(v, float) else v
                             for v in asdict(run).values()])
    rounds = len({r.round for r in runs})
    lines = [
        "# Attach port benchmark", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other engineers' "
        f"builds and tests (load average before the run: "
        f"{', '.join(f'{v:.2f}' for v in load_before)}), {platform.system()} loopback. "
        "Two hosts run the Go sample as two replicas (A at 127.0.0.1, B at 127.0.0.2, same "
        "port); A's attach port has `--peers 127.0.0.1:<port>,127.0.0.2:<port> --pod-ip "
        "127.0.0.1` (a static list standing in for the headless peers Service; A's own "
        "entry becomes its local plugin). Open loop from benchmarks/gateway/loadgen over one "
        f"gRPC connection, {rate} calls/s for {seconds:g} s after 1 s of unmeasured warm-up, "
        "latency counted from when each call was due. Query: the gateway benchmark's "
        "10-point `randomWalk` QueryData with the same PluginContext, JSON frames. "
        f"{rounds} rounds of the three targets, order rotating; CPU in cores = CPU seconds "
        "/ wall seconds; served = calls each replica's plugin answered (its "
        "`sample_go_queries_total`, warm-up included).", "",
        "Targets: **direct** = the plugin's own go-plugin unix socket (no front); **local** "
        "= host A's port 10000 (front -> A's plugin: the gateway's path into a pod); "
        "**attach** = host A's attach port (front -> A's plugin, or front -> B's port 10000 "
        "-> B's plugin, round robin per call).", "",
        "| round | target | calls | errors | p50 ms | p90 ms | p99 ms | max ms | served A | "
        "served B | front A CPU | plugin A CPU | front B CPU | plugin B CPU | hosts CPU | "
        "load CPU |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.round} | {r.target} | {r.sent} | {r.errors} | {r.p50:.2f} | "
                     f"{r.p90:.2f} | {r.p99:.2f} | {r.max:.2f} | {r.served_a} | {r.served_b} "
                     f"| {r.front_a_cpu:.3f} | {r.plugin_a_cpu:.3f} | {r.front_b_cpu:.3f} | "
                     f"{r.plugin_b_cpu:.3f} | {r.hosts_cpu:.3f} | {r.load_cpu:.3f} |")
    lines += ["", f"## Summary (median over {rounds} rounds)", "",
              "| target | p50 ms | p90 ms | p99 ms | + p50 over direct | + p90 | + p99 | errors "
              "| split A/B |", "|---|---|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        chosen = [r for r in runs if r.target == target]
        served = sum(r.served_a for r in chosen), sum(r.served_b for r in chosen)
        split = f"{served[0] / max(1, sum(served)):.1%} / {served[1] / max(1, sum(served)):.1%}"
        added = ("" if target == "direct" else
                 f"{_added(runs, target, 'p50'):+.2f} | {_added(runs, target, 'p90'):+.2f} | "
                 f"{_added(runs, target, 'p99'):+.2f}")
        lines.append(f"| {LABELS[target]} | {_median(runs, target, 'p50'):.2f} | "
                     f"{_median(runs, target, 'p90'):.2f} | {_median(runs, target, 'p99'):.2f} "
                     f"| {added or '- | - | -'} | {sum(r.errors for r in chosen)} | {split} |")
    p50, p99 = _added(runs, "attach", "p50"), _added(runs, "attach", "p99")
    errors = sum(r.errors for r in runs if r.target == "attach")
    met = p50 <= BUDGET_P50_MS and p99 <= BUDGET_P99_MS and errors == 0
    lines += ["", f"Target at 500 calls/s: attach at most +{BUDGET_P50_MS} ms p50 and "
              f"+{BUDGET_P99_MS} ms p99 over direct, no errors. This run ({rate} calls/s): "
              f"{p50:+.2f} ms p50, {p99:+.2f} ms p99, {errors} errors: "
              f"**{'met' if met else 'missed'}**.",
              *_gateway_section(),
              "Reproduce: `.venv/bin/python benchmarks/attach/bench_attach.py` and "
              "`.venv/bin/python benchmarks/attach/gateway_before_after.py` (first, for the "
              "gateway section); the `bench` extra draws the plot.", ""]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += [notes.read_text()]
    (RESULTS / "attach.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'); no plot written")
        return
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.25
    for i, (label, attr) in enumerate((("p50", "p50"), ("p90", "p90"), ("p99", "p99"))):
        axis.bar([x + i * width for x in range(len(TARGETS))],
                 [_median(runs, t, attr) for t in TARGETS], width, label=label)
    axis.set_xticks([x + width for x in range(len(TARGETS))], [LABELS[t] for t in TARGETS])
    axis.set_ylabel("ms")
    axis.set_title(f"QueryData latency at {rate} calls/s (median of {rounds} rounds)")
    axis.grid(alpha=0.3, axis="y")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "attach.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="calls per second")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured duration per target (bounded: at most 60)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three targets")
    parser.add_argument("--no-write", action="store_true",
                        help="print the runs only; write no results")
    parser.add_argument("--front", type=Path, help="this plugin-front binary instead of "
                        "hack/build-front.sh's (to compare builds)")
    parser.add_argument("--rewrite", action="store_true",
                        help="measure nothing: write attach.md and the plot again from "
                             "attach.csv (e.g. after NOTES.md or the gateway figures changed)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--seconds must be in (0, 60] and --rounds in [1, 10]")
    if args.rewrite:
        meta = json.loads((RESULTS / "attach-run.json").read_text())
        with (RESULTS / "attach.csv").open() as source:
            types = {f.name: f.type for f in fields(Run)}
            runs = [Run(**{k: (int(v) if types[k] in ("int", int) else
                               float(v) if types[k] in ("float", float) else v)
                           for k, v in row.items()}) for row in csv.DictReader(source)]
        write_results(runs, meta["rate"], meta["seconds"], tuple(meta["load_before"]))
        return 0
    loadgen, plugin_dist, front = build_all()
    os.environ[FRONT_ENV] = str(args.front or front)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-attach-") as tmp:
        runs = asyncio.run(measure(args.rate, args.seconds, args.rounds, Path(tmp), loadgen,
                                   plugin_dist))
    if args.no_write:
        return 0
    (RESULTS / "attach-run.json").write_text(json.dumps(
        {"rate": args.rate, "seconds": args.seconds, "load_before": load_before}) + "\n")
    write_results(runs, args.rate, args.seconds, load_before)
    print((RESULTS / "attach.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
