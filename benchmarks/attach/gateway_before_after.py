"""The gateway path before and after plugin-front: benchmarks/gateway, run for both trees.

"Before" is a commit (default HEAD: the host forwarding port 10000 byte for byte with
splice), extracted read-only with ``git archive`` into a temporary folder; "after" is this
work tree (plugin-front on port 10000). Each run is benchmarks/gateway/bench_gateway.py
``--latency-only`` with that tree's own code on PYTHONPATH; runs alternate (before, after,
before, after, ...) so both see the same machine. Writes
benchmarks/results/attach-gateway.csv, which bench_attach.py puts into attach.md.

    .venv/bin/python benchmarks/attach/gateway_before_after.py            # 2 runs each
    .venv/bin/python benchmarks/attach/gateway_before_after.py --before <commit> --runs 3
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
GENERATED = Path("operator") / "plugin_operator" / "protocol" / "generated"
# bench_gateway prints each measurement as a dataclass repr on a line of its own.
RUN_LINE = re.compile(r"^Run\(target='(?P<target>[^']+)', rate=(?P<rate>\d+), "
                      r"sent=(?P<sent>\d+), errors=(?P<errors>\d+), p50=(?P<p50>[\d.]+), "
                      r"p90=(?P<p90>[\d.]+), p99=(?P<p99>[\d.]+), "
                      r"gateway_cpu=(?P<gateway_cpu>[\d.e-]+), "
                      r"backend_cpu=(?P<backend_cpu>[\d.e-]+), "
                      r"load_cpu=(?P<load_cpu>[\d.e-]+)\)$")


def extract(commit: str, into: Path) -> Path:
    """The tree of ``commit``, without touching the repository's index or HEAD."""
    archive = into / "tree.tar"
    with archive.open("wb") as sink:
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                       stdout=sink, check=True, timeout=300)
    root = into / "tree"
    root.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    # The protobuf modules are generated at install time (git-ignored): the same protos.
    shutil.copytree(REPO / GENERATED, root / GENERATED)
    return root


def bench(root: Path, rates: list[int], seconds: float) -> list[dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(root / "operator")}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "gateway" /
                                               "bench_gateway.py"), "--latency-only",
                           "--seconds", f"{seconds:g}", "--rates", *map(str, rates)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_gateway in {root} failed:\n{done.stderr[-4000:]}")
    # Newer trees measure more targets (the Python floor, the Go data plane); only these two
    # exist on both sides.
    rows = [m.groupdict() for line in done.stdout.splitlines()
            if (m := RUN_LINE.match(line.strip()))
            and m["target"] in ("direct gRPC", "gateway")]
    if not rows:
        raise RuntimeError(f"no results in bench_gateway's output:\n{done.stdout[-4000:]}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the commit before plugin-front")
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=2, help="runs of each tree")
    args = parser.parse_args()
    front = subprocess.run([str(REPO / "hack" / "build-front.sh")], capture_output=True,
                           text=True, check=True, timeout=1800).stdout.strip().splitlines()[-1]
    os.environ["PLUGIN_OPERATOR_FRONT"] = front  # the work tree's host needs it
    load_before = os.getloadavg()
    results: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="gateway-before-") as tmp:
        before = extract(args.before, Path(tmp))
        for run in range(1, args.runs + 1):
            for tree, root in (("before", before), ("after", REPO)):
                for row in bench(root, args.rates, args.seconds):
                    results.append({"tree": tree, "run": str(run), **row})
                    print(results[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "attach-gateway.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["tree", "run", "target", "rate_qps", "requests", "errors", "p50_ms",
                         "p90_ms", "p99_ms", "gateway_cpu_cores", "backend_cpu_cores",
                         "load_cpu_cores"])
        for r in results:
            writer.writerow([r["tree"], r["run"], r["target"], r["rate"], r["sent"],
                             r["errors"], r["p50"], r["p90"], r["p99"], r["gateway_cpu"],
                             r["backend_cpu"], r["load_cpu"]])
    print(f"load average before: {load_before}; wrote {RESULTS / 'attach-gateway.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
