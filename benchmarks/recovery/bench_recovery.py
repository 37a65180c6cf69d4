"""Crash -> serving again, one replica of the Go sample (issue 15, item 1).

On loopback, in one run, the same host binary and plugin, three ways back from a SIGKILL of
the plugin process:

1. **in-pod**: the host restarts the plugin itself on the same ports (what a pod does now).
   Kills are spaced ``healthy_after`` apart, so each is a first crash, not a crash loop.
2. **new host**: the host's whole process group is killed and a new host started on the same
   ports: the least a container restart costs (the kubelet's own work comes on top; the
   cluster figures are in benchmarks/results/operator.md).
3. **Grafana** (modelled, Grafana is not run here): it checks its plugins once a second and
   starts a dead one again with no backoff (/work/shared/docs/protocol.md §7.1), so a crash
   waits U(0, 1) s for the check, then the plugin's own start, measured here as the time from
   spawning the Go sample to its handshake line.

"Serving" is the first CheckHealth the plugin answers through the host's gRPC port, probed
every 2 ms on a fresh connection (a reused channel would add gRPC's reconnect backoff, which
is the caller's, not the plugin's). A second table shows a crash loop: the delays the host
inserts before it hands over to the kubelet.

    .venv/bin/python benchmarks/recovery/bench_recovery.py             # 12 samples per path
    .venv/bin/python benchmarks/recovery/bench_recovery.py --samples 5

Writes benchmarks/results/recovery.md, recovery.csv and recovery.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))  # tests.support: the test harnesses the benchmarks share

from plugin_operator.host.handshake import plugin_environment  # noqa: E402
from plugin_operator.host.supervision import RestartPolicy  # noqa: E402
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION  # noqa: E402
from plugin_operator.protocol.client import PluginClient  # noqa: E402
from plugin_operator.protocol.errors import PluginError  # noqa: E402
from plugin_operator.protocol.models import CheckHealthRequest, PluginContext  # noqa: E402
from tests.support.host_launcher import start_host  # noqa: E402
from tests.support.wait import eventually_async  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TARGET_P50_S = 0.3
GRAFANA_CHECK_INTERVAL_S = 1.0
PROBE_INTERVAL_S = 0.002
CONTEXT = PluginContext(plugin_id="plugin-operator-sample-go-datasource")


def _built(script: str, *args: str) -> str:
    done = subprocess.run([str(REPO / "hack" / script), *args], capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hack/{script} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build() -> tuple[Path, Path]:
    """(the Go sample's plugin dir, plugin-front), built or cached."""
    sample = dict(line.split("=", 1) for line in _built("build-sample-go.sh", "sample-go")
                  .splitlines() if "=" in line)
    front = _built("build-front.sh").strip().splitlines()[-1]
    return Path(sample["SAMPLE_GO_DIST"]), Path(front)


async def _serves(target: str) -> bool:
    try:
        async with PluginClient(target, timeout=0.25) as client:
            await client.check_health(CheckHealthRequest(plugin_context=CONTEXT))
    except PluginError:
        return False
    return True  # the plugin answered (without a datasource its answer is an ERROR status)


async def wait_serving(target: str, since: float, timeout_s: float = 30.0) -> float:
    """Seconds from ``since`` until ``target`` answers CheckHealth OK."""
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        if await _serves(target):
            return time.monotonic() - since
        await asyncio.sleep(PROBE_INTERVAL_S)
    raise TimeoutError(f"{target} did not serve again within {timeout_s:g} s")


async def _next_pid(work: Path, old: int) -> int:
    """The restarted plugin's pid, from the ports file the host rewrites for it."""
    def changed() -> int:
        pid = int(json.loads((work / "ports.json").read_text())["pid"])
        return pid if pid != old else 0
    return await eventually_async("the restarted plugin's pid", changed, timeout_s=10,
                                  interval_s=0.005)


async def in_pod(dist: Path, work: Path, samples: int, spacing: float) -> list[float]:
    host = await start_host(dist, work)
    try:
        pid, times = host.plugin_pid, []
        for _ in range(samples):
            await asyncio.sleep(spacing)  # a first crash each time, not a loop
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            times.append(await wait_serving(host.grpc_target, killed))
            pid = await _next_pid(work, pid)
        return times
    finally:
        await host.stop()


async def crash_loop(dist: Path, work: Path) -> list[float]:
    """Kill the plugin as soon as it serves, until the host gives up: time to serve each."""
    host = await start_host(dist, work)
    times: list[float] = []
    try:
        pid = host.plugin_pid
        while host.process.returncode is None:
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            try:
                times.append(await wait_serving(host.grpc_target, killed, timeout_s=5))
            except TimeoutError:
                break  # the host gave up: the kubelet's turn
            pid = await _next_pid(work, pid)
        await asyncio.wait_for(host.process.wait(), 10)
        return times
    finally:
        if host.process.returncode is None:
            await host.stop()


async def new_host(dist: Path, work: Path, samples: int) -> list[float]:
    host = await start_host(dist, work)
    port, times = host.grpc_port, []
    try:
        for i in range(samples):
            killed = time.monotonic()
            os.killpg(os.getpgid(host.plugin_pid), signal.SIGKILL)
            host.process.kill()
            await host.process.wait()
            if host.front_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.front_pid, signal.SIGKILL)
            started = asyncio.create_task(start_host(dist, work / f"h{i}",
                                                     ["--grpc-port", str(port)]))
            times.append(await wait_serving(f"127.0.0.1:{port}", killed))
            host = await started
        return times
    finally:
        await host.stop()


def plugin_start_times(dist: Path, samples: int) -> list[float]:
    """Spawn -> handshake line of the Go sample, as Grafana would start it."""
    manifest = json.loads((dist / "plugin.json").read_text())
    executable = dist / f"{manifest['executable']}_linux_amd64"
    env = plugin_environment(os.environ, grafana_version=DEFAULT_GRAFANA_VERSION, settings={})
    times = []
    for _ in range(samples):
        began = time.monotonic()
        process = subprocess.Popen([str(executable)], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env, cwd=dist)
        assert process.stdout is not None
        process.stdout.readline()
        times.append(time.monotonic() - began)
        process.kill()
        process.wait()
    return times


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "p50": statistics.median(values), "min": ordered[0],
            "max": ordered[-1], "p90": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]}


def write_results(rows: dict[str, list[float]], loop: list[float]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "recovery.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "sample", "seconds"])
        for path, values in [*rows.items(), ("crash loop", loop)]:
            writer.writerows((path, i, f"{v:.4f}") for i, v in enumerate(values))
    summaries = {path: _summary(values) for path, values in rows.items()}
    grafana = summaries["Grafana (modelled)"]["p50"]
    ours = summaries["in-pod restart (host)"]["p50"]
    lines = [
        "# Crash -> serving again (issue 15, item 1)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}. Generated by `benchmarks/recovery/bench_recovery.py`; "
        "raw numbers in recovery.csv.", "",
        "One replica of the Go sample behind the host on loopback. Seconds from the SIGKILL "
        "of the plugin process to the first CheckHealth answered through the host's gRPC port "
        "(probed every 2 ms, fresh connection each time).", "",
        "| path | n | p50 | p90 | min | max |", "|---|---|---|---|---|---|"]
    for path, s in summaries.items():
        lines.append(f"| {path} | {s['n']:.0f} | {s['p50']:.3f} | {s['p90']:.3f} | "
                     f"{s['min']:.3f} | {s['max']:.3f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| crash -> serving <= {TARGET_P50_S} s p50 (in-pod) | {ours:.3f} s | "
              f"**{'yes' if ours <= TARGET_P50_S else 'no'}** |",
              f"| faster than Grafana | {grafana / ours:.1f}x faster (Grafana modelled "
              f"{grafana:.3f} s) | **{'yes' if ours < grafana else 'no'}** |",
              "", "## A crash loop", "",
              "The plugin killed again as soon as it serves: the host restarts it at once "
              "twice, then waits 0.1 s, doubling, and after "
              f"{RestartPolicy().give_up_after} exits within a minute exits itself, so the "
              "kubelet's CrashLoopBackOff takes over.", "",
              "| exit | seconds to serve again |", "|---|---|"]
    lines += [f"| {i + 1} | {v:.3f} |" for i, v in enumerate(loop)]
    lines += [f"| {len(loop) + 1} | host exits (the kubelet restarts the container) |"]
    (RESULTS / "recovery.md").write_text("\n".join(lines) + "\n")
    _plot(rows)


def _plot(rows: dict[str, list[float]]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.boxplot(list(rows.values()), orientation="horizontal", tick_labels=list(rows.keys()))
    ax.axvline(TARGET_P50_S, linestyle="--", color="grey", label=f"target {TARGET_P50_S} s")
    ax.set_xlabel("crash -> serving again (s)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "recovery.png", dpi=120)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=12)
    args = parser.parse_args()
    dist, front = build()
    os.environ["PLUGIN_OPERATOR_FRONT"] = str(front)
    spacing = RestartPolicy().healthy_after + 0.5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        starts = plugin_start_times(dist, args.samples)
        rng = random.Random(1)
        grafana = [rng.uniform(0, GRAFANA_CHECK_INTERVAL_S) + s for s in starts]
        inside = await in_pod(dist, work / "in-pod", args.samples, spacing)
        fresh = await new_host(dist, work / "new-host", args.samples)
        loop = await crash_loop(dist, work / "loop")
    rows = {"in-pod restart (host)": inside, "new host (container restart, without kubelet)":
            fresh, "Grafana (modelled)": grafana}
    write_results(rows, loop)
    print((RESULTS / "recovery.md").read_text())


if __name__ == "__main__":
    asyncio.run(main())
