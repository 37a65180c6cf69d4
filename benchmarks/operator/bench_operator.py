"""Operator benchmark (issue 6, item 10).

(a) On the real local cluster, through the chart-installed operator and the Python sample:
    - crash -> serving again: a QueryData with ``crashAfterQueries: 1`` in its settings makes
      the backend exit; from that moment, CheckHealth is sent to the pod IP every 20 ms until
      it answers OK, and a watch notes when the pod is Ready again. Every sample uses a fresh
      pod (the kubelet's CrashLoopBackOff is keyed by pod), measured for an operator-owned
      pod and, in the same run, for a bare pod with the same spec that only the kubelet looks
      after. One repeated crash in the same pod shows what CrashLoopBackOff adds.
    - deleted pod -> replacement serving (the operator's own recovery path).
    - ``kubectl apply`` of a Plugin whose archive the operator has cached -> first successful
      CheckHealth on the new pod.
    The benchmark process calls pod IPs directly: on hack/cluster.sh's single node the pod
    network is routed to this machine, and all timestamps come from one clock.
(b) On a throw-away control plane (hack/control-plane.sh; no kubelet, pods stay Pending): the
    operator process is started after the objects exist and we measure the time until every
    Plugin's and DataSourceInstance's status.observedGeneration matches its generation, and
    its resident memory, at 100 Plugins + 500 DataSourceInstances (baseline) and at 1,000 +
    5,000, plus its memory with nothing to do.

    .venv/bin/python benchmarks/operator/bench_operator.py                 # both parts
    .venv/bin/python benchmarks/operator/bench_operator.py --part cluster --samples 5
    .venv/bin/python benchmarks/operator/bench_operator.py --part scale

Writes benchmarks/results/operator.md, operator.json, operator.csv and operator-recovery.png.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))

from plugin_operator.protocol.client import PluginClient  # noqa: E402
from plugin_operator.protocol.errors import PluginError  # noqa: E402
from plugin_operator.protocol.models import (  # noqa: E402
    CheckHealthRequest,
    DataQuery,
    DataSourceInstanceSettings,
    PluginContext,
    QueryDataRequest,
    TimeRange,
)
from tests.e2e.conftest import create_namespace  # noqa: E402
from tests.e2e.install import Release, install_release  # noqa: E402
from tests.e2e.kube import Cluster  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.samples import package_testdata_python, run  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
HACK = REPO / "hack"
TESTDATA_ID = "plugin-operator-testdata-datasource"
API_VERSION = "plugin-operator.dev/v1alpha1"
LABEL_PLUGIN = "plugin-operator.dev/plugin"
GRPC_PORT = 10000
PROBE_INTERVAL_S = 0.02
TARGETS = {"crash_s": 1.5, "apply_s": 3.0, "converge_s": 60.0, "rss_mb": 150.0}


def _script(*command: str) -> str:
    result = subprocess.run([str(HACK / command[0]), *command[1:]], capture_output=True,
                            text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"hack/{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "median": statistics.median(ordered), "min": ordered[0],
            "max": ordered[-1],
            "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
            "stdev": statistics.stdev(ordered) if len(ordered) > 1 else 0.0}


# --- (a) the real cluster -------------------------------------------------------------------

def _context(crash: bool) -> PluginContext:
    json_data: dict[str, Any] = {"endpoint": "bench"}
    if crash:
        json_data["crashAfterQueries"] = 1
    settings = DataSourceInstanceSettings(
        uid="bench-crash" if crash else "bench", name="bench",
        json_data=json.dumps(json_data).encode(), decrypted_secure_json_data={"apiKey": "k"},
        last_updated_ms=int(time.time() * 1000))
    return PluginContext(plugin_id=TESTDATA_ID, datasource_instance_settings=settings)


async def _healthy_once(ip: str) -> bool:
    try:
        async with PluginClient(f"{ip}:{GRPC_PORT}", timeout=0.5) as client:
            result = await client.check_health(CheckHealthRequest(plugin_context=_context(False)))
        return result.status.name == "OK"
    except (PluginError, OSError, TimeoutError):
        return False


async def wait_serving(ip: str, timeout_s: float = 120) -> float:
    """Wall time at which CheckHealth on ``ip`` first answers OK."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await _healthy_once(ip):
            return time.time()
        await asyncio.sleep(PROBE_INTERVAL_S)
    raise TimeoutError(f"{ip} did not answer CheckHealth within {timeout_s}s")


async def crash(ip: str) -> float:
    """Make the backend at ``ip`` exit through the sample's crash switch; returns when."""
    started = time.time()
    request = QueryDataRequest(plugin_context=_context(True), queries=[DataQuery(
        ref_id="A", query_type="random_walk", max_data_points=10,
        time_range=TimeRange(0, 60_000))])
    try:
        async with PluginClient(f"{ip}:{GRPC_PORT}", timeout=5) as client:
            await client.query_data(request)
    except PluginError:
        return started  # the backend went away mid-call, as asked
    raise RuntimeError(f"the backend at {ip} answered a query that should have crashed it")


@dataclass
class PodEvent:
    at: float
    name: str
    uid: str
    ip: str
    ready: bool


class PodWatch:
    """``kubectl get pods -w`` in a thread, every event stamped with the time it arrived."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        jsonpath = ('{.metadata.name} {.metadata.uid} {.status.podIP} '
                    '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}')
        self.events: list[PodEvent] = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
             namespace, "get", "pods", "-w", "-o", f"jsonpath={jsonpath}"],
            stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if len(parts) < 2:
                continue
            ip = parts[2] if len(parts) > 2 and parts[2][0].isdigit() else ""
            ready = parts[-1] == "True"
            with self.lock:
                self.events.append(PodEvent(time.time(), parts[0], parts[1], ip, ready))

    def wait(self, what: str, match: Callable[[PodEvent], bool], after: float,
             timeout_s: float = 180) -> PodEvent:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = [e for e in self.events if e.at >= after and match(e)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise TimeoutError(f"no pod event for {what} within {timeout_s}s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _has_ip(prefix: str, not_uid: str = "") -> Callable[[PodEvent], bool]:
    return lambda e: e.name.startswith(prefix) and e.uid != not_uid and bool(e.ip)


def _ready(uid: str, ready: bool = True) -> Callable[[PodEvent], bool]:
    return lambda e: e.uid == uid and e.ready is ready


def plugin_manifest(name: str, configmap: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Plugin", "metadata": {"name": name},
            "spec": {"pluginId": TESTDATA_ID, "version": "0.1.0", "replicas": 1,
                     "source": {"configMapRef": {"name": configmap, "key": "plugin.zip"}},
                     "signature": {"policy": "RequireValid"}}}


@dataclass
class ClusterResults:
    crash_operator: list[dict[str, float]] = field(default_factory=list)
    crash_kubelet: list[dict[str, float]] = field(default_factory=list)
    crash_repeated: list[dict[str, float]] = field(default_factory=list)
    replace_deleted: list[dict[str, float]] = field(default_factory=list)
    apply_first_call: list[dict[str, float]] = field(default_factory=list)


def _pod(cluster: Cluster, namespace: str, plugin: str) -> dict[str, Any]:
    pods = [p for p in cluster.get(namespace, "pods", "-l", f"{LABEL_PLUGIN}={plugin}")["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, f"expected one pod of {plugin}, found {len(pods)}"
    found: dict[str, Any] = pods[0]
    return found


async def _crash_sample(watch: PodWatch, name: str, uid: str, ip: str) -> dict[str, float]:
    crashed = await crash(ip)
    serving = await wait_serving(ip)
    not_ready = watch.wait(f"{name} not Ready", _ready(uid, False), after=crashed)
    ready = watch.wait(f"{name} Ready again", _ready(uid), after=not_ready.at)
    return {"serving_s": serving - crashed, "ready_s": ready.at - crashed}


def _bare_pod(operator_pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The operator's backend pod, as a plain pod that nothing but the kubelet looks after."""
    spec = dict(operator_pod["spec"])
    for key in ("nodeName",):
        spec.pop(key, None)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "bare"}}, "spec": spec}


async def measure_cluster(samples: int, work: Path) -> tuple[ClusterResults, dict[str, str]]:
    kubeconfig = Path(_script("cluster.sh", "up"))
    kubectl = Path(_script("build-components.sh", "kubectl")) / "kubectl"
    helm = Path(_script("build-components.sh", "helm")) / "helm"
    image = _script("image.sh", "all")
    cluster = Cluster(kubeconfig=kubeconfig, kubectl_path=kubectl, image=image,
                      logs_hint="hack/cluster.sh status", local=True)
    signed = work / "signed.zip"
    key = work / "bench-signer.asc"
    result = run(HACK / "sign-plugin.sh", package_testdata_python(work), "--output", signed,
                 "--key", key, "--generate-key")
    assert result.returncode == 0, result.stderr
    namespace = create_namespace(cluster, "bench-operator")
    release: Release | None = None
    watch: PodWatch | None = None
    results = ClusterResults()
    try:
        release = install_release(
            cluster, helm, work, plugin_namespaces=[namespace], prefix="po-bench",
            trusted_keys={"bench-signer.asc": key.with_suffix(".pub.asc").read_text()},
            # The benchmark calls backends from this machine, outside any NetworkPolicy peer.
            values={"networkPolicy": {"enabled": False}})
        cluster.kubectl("-n", namespace, "create", "configmap", "archive",
                        f"--from-file=plugin.zip={signed}")
        watch = PodWatch(cluster, namespace)

        def apply(obj: dict[str, Any]) -> None:
            cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(obj))

        # Warm: the operator fetches and verifies the archive once; later Plugins reuse it.
        apply(plugin_manifest("warm", "archive"))
        warm = cluster.wait_ready(namespace, _wait_pod_name(cluster, namespace, "warm"))
        await wait_serving(warm["status"]["podIP"])

        for i in range(samples):
            name = f"apply-{i}"
            started = time.time()
            apply(plugin_manifest(name, "archive"))
            scheduled = watch.wait(f"{name} has an IP", _has_ip(prefix=name), after=started)
            serving = await wait_serving(scheduled.ip)
            ready = watch.wait(f"{name} Ready", _ready(scheduled.uid), after=started)
            results.apply_first_call.append({"first_call_s": serving - started,
                                             "ready_s": ready.at - started})
            cluster.kubectl("-n", namespace, "delete", "plugin", name, "--wait=false")
            print(f"apply {i}: {results.apply_first_call[-1]}", flush=True)

        for i in range(samples):
            pod = _pod(cluster, namespace, "warm")
            name, uid, ip = pod["metadata"]["name"], pod["metadata"]["uid"], pod["status"]["podIP"]
            results.crash_operator.append(await _crash_sample(watch, name, uid, ip))
            print(f"crash (operator) {i}: {results.crash_operator[-1]}", flush=True)
            if i == 0:
                # The same pod again at once: the kubelet's CrashLoopBackOff (10 s first).
                results.crash_repeated.append(await _crash_sample(watch, name, uid, ip))
                print(f"crash repeated: {results.crash_repeated[-1]}", flush=True)
            # A fresh pod for the next sample: delete it and time the operator's replacement.
            deleted = time.time()
            cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
            replacement = watch.wait("a replacement pod with an IP",
                                     _has_ip(prefix=name, not_uid=uid), after=deleted)
            serving = await wait_serving(replacement.ip)
            ready = watch.wait("the replacement Ready", _ready(replacement.uid), after=deleted)
            results.replace_deleted.append({"serving_s": serving - deleted,
                                            "ready_s": ready.at - deleted})
            print(f"replace {i}: {results.replace_deleted[-1]}", flush=True)
            await asyncio.sleep(1)

        template = _pod(cluster, namespace, "warm")
        for i in range(samples):
            name = f"bare-{i}"
            apply(_bare_pod(template, name))
            pod = cluster.wait_ready(namespace, name)
            await wait_serving(pod["status"]["podIP"])
            results.crash_kubelet.append(await _crash_sample(
                watch, name, pod["metadata"]["uid"], pod["status"]["podIP"]))
            print(f"crash (kubelet only) {i}: {results.crash_kubelet[-1]}", flush=True)
            cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
        facts = {"image": image, "operator_release": release.name}
        return results, facts
    finally:
        if watch is not None:
            watch.stop()
        cluster.kubectl("-n", namespace, "delete", "plugins", "--all", "--wait=false",
                        check=False)
        if release is not None:
            release.uninstall()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _wait_pod_name(cluster: Cluster, namespace: str, plugin: str) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pods = cluster.get(namespace, "pods", "-l", f"{LABEL_PLUGIN}={plugin}")["items"]
        if pods:
            return str(pods[0]["metadata"]["name"])
        time.sleep(0.5)
    raise TimeoutError(f"the operator made no pod for Plugin {plugin}")


# --- (b) scale on a throw-away control plane -------------------------------------------------

@dataclass
class ScaleRun:
    plugins: int
    datasources: int
    converge_s: float | None
    peak_rss_mb: float
    settled_rss_mb: float
    rss_samples: list[tuple[float, float]]


def _rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def running_operator(kubeconfig: Path, namespace: str, work: Path, public_key: Path,
                     profile: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    artifacts_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig),
           "PLUGIN_OPERATOR_NAMESPACES": namespace,
           "PLUGIN_OPERATOR_IMAGE": "plugin-operator.dev/plugin-operator:bench",
           "PLUGIN_OPERATOR_ARTIFACTS_DIRECTORY": str(work / f"artifacts-{namespace}"),
           "PLUGIN_OPERATOR_ARTIFACTS_PORT": str(artifacts_port),
           "PLUGIN_OPERATOR_ARTIFACTS_URL": f"http://127.0.0.1:{artifacts_port}",
           "PLUGIN_OPERATOR_METRICS_PORT": str(free_port()),
           "PLUGIN_OPERATOR_HEALTH_PORT": str(free_port()),
           "PLUGIN_OPERATOR_TRUSTED_KEYS": str(public_key),
           "PLUGIN_OPERATOR_GATEWAY_NAMESPACE": namespace}
    cli = Path(sys.executable).with_name("plugin-operator")
    command = [str(cli), "operator", "--log-level", "WARNING"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), str(cli), "operator",
                   "--log-level", "WARNING"]
    with (work / f"operator-{namespace}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _create_in_chunks(kubectl: Callable[..., subprocess.CompletedProcess[str]],
                      namespace: str, objects: list[dict[str, Any]], chunk: int = 500) -> None:
    for start in range(0, len(objects), chunk):
        items = {"apiVersion": "v1", "kind": "List", "items": objects[start:start + chunk]}
        kubectl("-n", namespace, "create", "-f", "-", stdin=json.dumps(items))


def _unconverged(kubectl: Callable[..., subprocess.CompletedProcess[str]],
                 namespace: str) -> int:
    jsonpath = '{range .items[*]}{.metadata.generation} {.status.observedGeneration}{"\\n"}{end}'
    out = kubectl("-n", namespace, "get", "plugins,datasourceinstances", "-o",
                  f"jsonpath={jsonpath}").stdout
    return sum(1 for line in out.splitlines() if len(set(line.split())) != 1
               or len(line.split()) != 2)


def measure_scale(runs: list[tuple[int, int]], work: Path,
                  profile_largest: bool) -> tuple[list[ScaleRun], float]:
    state = work / "control-plane"
    kubeconfig = Path(_script("control-plane.sh", "start", str(state)))
    kubectl_bin = Path(_script("build-components.sh", "kubectl")) / "kubectl"

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(kubectl_bin), "--kubeconfig", str(kubeconfig), *args],
                                input=stdin, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:4])} failed: {result.stderr[-2000:]}")
        return result

    try:
        kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/plugins.plugin-operator.dev", "crd/datasourceinstances.plugin-operator.dev")
        signed = work / "scale-signed.zip"
        key = work / "scale-signer.asc"
        signing = run(HACK / "sign-plugin.sh", package_testdata_python(work / "scale"),
                      "--output", signed, "--key", key, "--generate-key")
        assert signing.returncode == 0, signing.stderr
        public_key = key.with_suffix(".pub.asc")

        idle_ns = "bench-idle"
        kubectl("create", "namespace", idle_ns)
        with running_operator(kubeconfig, idle_ns, work, public_key) as process:
            time.sleep(15)
            idle_rss = _rss_mb(process.pid)

        results = []
        for plugin_count, datasource_count in runs:
            namespace = f"bench-{plugin_count}-{datasource_count}"
            kubectl("create", "namespace", namespace)
            kubectl("-n", namespace, "create", "serviceaccount", "default")
            kubectl("-n", namespace, "create", "configmap", "archive",
                    f"--from-file=plugin.zip={signed}")
            kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "data": {"apiKey": base64.b64encode(b"bench").decode()}}))
            _create_in_chunks(kubectl, namespace, [plugin_manifest(f"p-{i}", "archive")
                                                   for i in range(plugin_count)])
            _create_in_chunks(kubectl, namespace, [{
                "apiVersion": API_VERSION, "kind": "DataSourceInstance",
                "metadata": {"name": f"ds-{i}"},
                "spec": {"pluginRef": {"name": f"p-{i % plugin_count}"}, "uid": f"ds-{i}",
                         "jsonData": {"endpoint": "bench"},
                         "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {
                             "name": "creds", "key": "apiKey"}}}}}
                for i in range(datasource_count)])
            profile = (work / f"operator-{namespace}.prof"
                       if profile_largest and (plugin_count, datasource_count) == runs[-1]
                       else None)
            samples: list[tuple[float, float]] = []
            converged: float | None = None
            with running_operator(kubeconfig, namespace, work, public_key, profile) as process:
                started = time.monotonic()
                deadline = started + 300
                while time.monotonic() < deadline:
                    time.sleep(1)
                    rss_pid = process.pid
                    samples.append((time.monotonic() - started, _rss_mb(rss_pid)))
                    if _unconverged(kubectl, namespace) == 0:
                        converged = time.monotonic() - started
                        break
                # What it holds once the work is done (timers and health rechecks go on).
                time.sleep(10)
                settled = _rss_mb(process.pid)
                peak = _rss_mb(process.pid, "VmHWM")
            print(f"scale {plugin_count}/{datasource_count}: converged in {converged} s, "
                  f"peak RSS {peak:.0f} MB", flush=True)
            results.append(ScaleRun(plugin_count, datasource_count, converged, peak, settled,
                                    samples))
        return results, idle_rss
    finally:
        subprocess.run([str(HACK / "control-plane.sh"), "stop", str(state)], timeout=120,
                       check=False)


# --- results ---------------------------------------------------------------------------------

def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f} {unit}"


def _row(label: str, values: list[float]) -> str:
    s = summary(values)
    if not s["n"]:
        return f"| {label} | 0 | - | - | - | - |"
    return (f"| {label} | {int(s['n'])} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | "
            f"{s['stdev']:.2f} |")


def write_results(cluster: ClusterResults | None, facts: dict[str, str],
                  scale: list[ScaleRun] | None, idle_rss: float | None, samples: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    json_path = RESULTS / "operator.json"
    if json_path.exists():
        previous = json.loads(json_path.read_text())
    data: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "python": platform.python_version(),
        "cluster": previous.get("cluster"), "scale": previous.get("scale"),
    }
    if cluster is not None:
        data["cluster"] = {"facts": facts, "samples": samples,
                           **dict(cluster.__dict__)}
    if scale is not None:
        data["scale"] = {"idle_rss_mb": idle_rss, "runs": [
            dict(run_.__dict__) for run_ in scale]}
    json_path.write_text(json.dumps(data, indent=2))

    with (RESULTS / "operator.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["part", "measurement", "sample", "metric", "seconds_or_mb"])
        for name, rows in (data["cluster"] or {}).items():
            if isinstance(rows, list):
                for index, row in enumerate(rows):
                    for metric, value in row.items():
                        writer.writerow(["cluster", name, index, metric, f"{value:.4f}"])
        for run_ in (data["scale"] or {}).get("runs", []):
            label = f"{run_['plugins']}p+{run_['datasources']}ds"
            writer.writerow(["scale", label, 0, "converge_s", run_["converge_s"]])
            writer.writerow(["scale", label, 0, "peak_rss_mb", f"{run_['peak_rss_mb']:.1f}"])
            writer.writerow(["scale", label, 0, "settled_rss_mb",
                             f"{run_['settled_rss_mb']:.1f}"])
    _write_markdown(data)
    _plot(data)


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def _write_markdown(data: dict[str, Any]) -> None:
    lines = ["# Operator benchmark", "",
             f"Machine: {data['machine']}, Python {data['python']}. "
             "Generated by `benchmarks/operator/bench_operator.py`; raw numbers in "
             "operator.json / operator.csv.", ""]
    cluster = data.get("cluster")
    if cluster:
        def values(name: str, metric: str) -> list[float]:
            return [row[metric] for row in cluster[name]]

        lines += ["## (a) Recovery and start-up on the real cluster", "",
                  "Local single-node cluster (hack/cluster.sh), chart-installed operator, "
                  "Python sample, one replica. Times in seconds from the crash (the moment the "
                  "crashing QueryData was sent), the pod deletion or the `kubectl apply`. "
                  "\"serving\" = first OK CheckHealth on the pod IP (probed every 20 ms); "
                  "\"Ready\" = the pod's Ready condition as seen by a watch.", "",
                  "| measurement | n | median | min | max | stdev |", "|---|---|---|---|---|---|",
                  _row("crash -> serving, operator-owned pod", values("crash_operator",
                                                                        "serving_s")),
                  _row("crash -> Ready, operator-owned pod", values("crash_operator",
                                                                      "ready_s")),
                  _row("crash -> serving, bare pod (kubelet only)", values("crash_kubelet",
                                                                             "serving_s")),
                  _row("crash -> Ready, bare pod (kubelet only)", values("crash_kubelet",
                                                                           "ready_s")),
                  _row("2nd crash in the same pod -> serving (CrashLoopBackOff)",
                       values("crash_repeated", "serving_s")),
                  _row("pod deleted -> replacement serving (operator)",
                       values("replace_deleted", "serving_s")),
                  _row("pod deleted -> replacement Ready (operator)",
                       values("replace_deleted", "ready_s")),
                  _row("kubectl apply -> first successful call (artifact cached)",
                       values("apply_first_call", "first_call_s")),
                  _row("kubectl apply -> pod Ready", values("apply_first_call", "ready_s")),
                  ""]
        crash_median = summary(values("crash_operator", "serving_s")).get("median")
        apply_median = summary(values("apply_first_call", "first_call_s")).get("median")
        lines += ["| target | measured (median) | met |", "|---|---|---|",
                  f"| crashed backend serving again <= {TARGETS['crash_s']} s | "
                  f"{_fmt(crash_median)} | "
                  f"{_met(None if crash_median is None else crash_median <= TARGETS['crash_s'])} |",
                  f"| apply -> first call <= {TARGETS['apply_s']} s | {_fmt(apply_median)} | "
                  f"{_met(None if apply_median is None else apply_median <= TARGETS['apply_s'])} |",
                  ""]
    scale = data.get("scale")
    if scale:
        lines += ["## (b) Convergence and memory on a throw-away control plane", "",
                  "etcd + kube-apiserver only (hack/control-plane.sh): backend pods are created "
                  "but never scheduled. The objects exist before the operator starts; "
                  "converged = every Plugin's and DataSourceInstance's "
                  "status.observedGeneration equals its generation (polled each second). "
                  "RSS from /proc (VmHWM = peak).", "",
                  f"Idle operator (no objects): {scale['idle_rss_mb']:.0f} MB RSS.", "",
                  "| Plugins | DataSourceInstances | converged after | peak RSS | RSS 10 s later |",
                  "|---|---|---|---|---|"]
        for run_ in scale["runs"]:
            lines.append(f"| {run_['plugins']} | {run_['datasources']} | "
                         f"{_fmt(run_['converge_s'])} | {run_['peak_rss_mb']:.0f} MB | "
                         f"{run_['settled_rss_mb']:.0f} MB |")
        largest = max(scale["runs"], key=lambda r: r["plugins"])
        converge = largest["converge_s"]
        lines += ["", "| target | measured | met |", "|---|---|---|",
                  f"| {largest['plugins']} Plugins + {largest['datasources']} "
                  f"DataSourceInstances converged <= {TARGETS['converge_s']:.0f} s | "
                  f"{_fmt(converge)} | "
                  f"{_met(converge is not None and converge <= TARGETS['converge_s'])} |",
                  f"| operator RSS < {TARGETS['rss_mb']:.0f} MB | "
                  f"{largest['peak_rss_mb']:.0f} MB peak | "
                  f"{_met(largest['peak_rss_mb'] < TARGETS['rss_mb'])} |", ""]
    notes = REPO / "benchmarks" / "operator" / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (RESULTS / "operator.md").write_text("\n".join(lines))


def _plot(data: dict[str, Any]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]); no plot", file=sys.stderr)
        return
    cluster, scale = data.get("cluster"), data.get("scale")
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    if cluster:
        groups = [("crash\noperator", [r["serving_s"] for r in cluster["crash_operator"]]),
                  ("crash\nkubelet only", [r["serving_s"] for r in cluster["crash_kubelet"]]),
                  ("pod deleted\noperator", [r["serving_s"] for r in cluster["replace_deleted"]]),
                  ("apply ->\nfirst call", [r["first_call_s"]
                                            for r in cluster["apply_first_call"]])]
        axes[0].boxplot([g[1] for g in groups], tick_labels=[g[0] for g in groups])
        axes[0].axhline(TARGETS["crash_s"], color="tab:red", linestyle=":", label="1.5 s")
        axes[0].axhline(TARGETS["apply_s"], color="tab:orange", linestyle=":", label="3 s")
        axes[0].set_ylabel("seconds until serving")
        axes[0].set_title("(a) real cluster")
        axes[0].legend()
    if scale:
        for run_ in scale["runs"]:
            points = run_["rss_samples"]
            axes[1].plot([p[0] for p in points], [p[1] for p in points],
                         label=f"{run_['plugins']} Plugins + {run_['datasources']} DSIs")
        axes[1].axhline(TARGETS["rss_mb"], color="tab:red", linestyle=":", label="150 MB")
        axes[1].set_xlabel("seconds since operator start (until converged)")
        axes[1].set_ylabel("operator RSS (MB)")
        axes[1].set_title("(b) control plane")
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "operator-recovery.png", dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["cluster", "scale", "all"], default="all")
    parser.add_argument("--samples", type=int, default=7, help="samples per recovery figure")
    parser.add_argument("--scale", nargs="+", default=["100:500", "1000:5000"],
                        help="PLUGINS:DATASOURCES runs; the last one is the target")
    parser.add_argument("--profile", action="store_true",
                        help="run the operator of the largest scale run under cProfile")
    args = parser.parse_args()
    if args.samples < 2:
        parser.error("--samples must be at least 2 to report a spread")
    try:
        runs = [(int(p), int(d)) for p, d in (s.split(":") for s in args.scale)]
    except ValueError:
        parser.error("--scale takes PLUGINS:DATASOURCES pairs such as 1000:5000")
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        work = Path(tmp)
        cluster_results: ClusterResults | None = None
        facts: dict[str, str] = {}
        scale: list[ScaleRun] | None = None
        idle: float | None = None
        if args.part in ("cluster", "all"):
            cluster_results, facts = asyncio.run(measure_cluster(args.samples, work))
        if args.part in ("scale", "all"):
            scale, idle = measure_scale(runs, work, args.profile)
            if args.profile:
                for prof in work.glob("*.prof"):
                    target = RESULTS / "operator-profile.txt"
                    import pstats
                    with target.open("w") as out:
                        pstats.Stats(str(prof), stream=out).sort_stats(
                            "cumulative").print_stats(40)
        write_results(cluster_results, facts, scale, idle, args.samples)
    print((RESULTS / "operator.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
