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
(b) On a throw-away control plane (hack/control-plane.sh; no kubelet, pods stay Pending), in
    one run: the operator process is started after the objects exist and we measure the time
    until every Plugin's and DataSourceInstance's status.observedGeneration matches its
    generation (a watch), its resident memory and CPU, and the apiserver's request counters,
    at 100 Plugins + 500 DataSourceInstances (the baseline, whose statuses the ceiling copies),
    1,000 + 5,000 and a larger size; and, on a fresh namespace of the same size, the ceiling:
    benchmarks/operator/ceiling.py doing only the writes the operator must do, at a few
    concurrency levels.

    .venv/bin/python benchmarks/operator/bench_operator.py                 # both parts
    .venv/bin/python benchmarks/operator/bench_operator.py --part cluster --samples 5
    .venv/bin/python benchmarks/operator/bench_operator.py --part scale
    .venv/bin/python benchmarks/operator/bench_operator.py --part scale --scale 100:500 \
        1000:5000 --ceiling 1000:5000 --concurrency 4 16 64 --profile

Writes benchmarks/results/operator.md, operator.json, operator.csv, operator-recovery.png and
operator-scale.png.
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
from datetime import UTC, datetime
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
TARGETS = {"replace_s": 2.0, "crash_s": 1.5, "apply_s": 3.0, "converge_s": 60.0, "rss_mb": 250.0,
           "ceiling_ratio": 1.5}


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


# A restart inside the container can end before the readiness probe (every second, two
# failures) notices; a pod not reported unready this long after the crash stayed Ready.
STAYED_READY_AFTER_S = 4.0


async def _crash_sample(watch: PodWatch, name: str, uid: str, ip: str) -> dict[str, float]:
    """Seconds from the crash until the pod serves again, and until it is Ready again (0
    when it never stopped being Ready)."""
    crashed = await crash(ip)
    serving = await wait_serving(ip)
    try:
        not_ready = watch.wait(f"{name} not Ready", _ready(uid, False), after=crashed,
                               timeout_s=STAYED_READY_AFTER_S)
    except TimeoutError:
        return {"serving_s": serving - crashed, "ready_s": 0.0}
    ready = watch.wait(f"{name} Ready again", _ready(uid), after=not_ready.at)
    return {"serving_s": serving - crashed, "ready_s": ready.at - crashed}


def _bare_pod(operator_pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The operator's backend pod, as a plain pod that nothing but the kubelet looks after:
    its host exits with the plugin (--crash-loop-exits 1), so the kubelet restarts it, as
    every backend did before hosts restarted their plugins themselves."""
    spec = dict(operator_pod["spec"])
    for key in ("nodeName",):
        spec.pop(key, None)
    backend = dict(spec["containers"][0])
    backend["args"] = [*backend["args"], "--crash-loop-exits", "1"]
    spec["containers"] = [backend, *spec["containers"][1:]]
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
            # The replacement takes the replica's other name: "<name>s", or <name> without it.
            replacement = watch.wait("a replacement pod with an IP",
                                     _has_ip(prefix=name.removesuffix("s"), not_uid=uid),
                                     after=deleted)
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
    unconverged_at_end: int = 0
    load_avg: str = ""
    requests: dict[str, int] = field(default_factory=dict)
    apiserver_cpu_s: float = 0.0
    operator_cpu_s: float = 0.0


@dataclass
class CeilingRun:
    plugins: int
    datasources: int
    concurrency: int
    converge_s: float | None  # process start -> the watch saw the last object converge
    client_s: float  # the client's own clock: first list -> last write answered
    client_cpu_s: float
    writes: int
    load_avg: str = ""
    requests: dict[str, int] = field(default_factory=dict)
    apiserver_cpu_s: float = 0.0


def _rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (what the apiserver and etcd spent)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _operator_env(kubeconfig: Path, namespace: str, work: Path,
                  public_key: Path) -> dict[str, str]:
    artifacts_port = free_port()
    return {"KUBECONFIG": str(kubeconfig),
            "PLUGIN_OPERATOR_NAMESPACES": namespace,
            "PLUGIN_OPERATOR_IMAGE": "plugin-operator.dev/plugin-operator:bench",
            "PLUGIN_OPERATOR_ARTIFACTS_DIRECTORY": str(work / f"artifacts-{namespace}"),
            "PLUGIN_OPERATOR_ARTIFACTS_PORT": str(artifacts_port),
            "PLUGIN_OPERATOR_ARTIFACTS_URL": f"http://127.0.0.1:{artifacts_port}",
            "PLUGIN_OPERATOR_METRICS_PORT": str(free_port()),
            "PLUGIN_OPERATOR_HEALTH_PORT": str(free_port()),
            "PLUGIN_OPERATOR_TRUSTED_KEYS": str(public_key),
            "PLUGIN_OPERATOR_GATEWAY_NAMESPACE": namespace}


@contextmanager
def running_operator(kubeconfig: Path, namespace: str, work: Path, public_key: Path,
                     profile: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **_operator_env(kubeconfig, namespace, work, public_key)}
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


def _unconverged(kubectl: Callable[..., subprocess.CompletedProcess[str]],
                 namespace: str) -> int:
    jsonpath = '{range .items[*]}{.metadata.generation} {.status.observedGeneration}{"\\n"}{end}'
    out = kubectl("-n", namespace, "get", "plugins,datasourceinstances", "-o",
                  f"jsonpath={jsonpath}").stdout
    return sum(1 for line in out.splitlines() if len(set(line.split())) != 1
               or len(line.split()) != 2)


def _scale_objects(plugin_count: int, datasource_count: int) -> list[dict[str, Any]]:
    plugins = [plugin_manifest(f"p-{i}", "archive") for i in range(plugin_count)]
    datasources = [{
        "apiVersion": API_VERSION, "kind": "DataSourceInstance",
        "metadata": {"name": f"ds-{i}"},
        "spec": {"pluginRef": {"name": f"p-{i % plugin_count}"}, "uid": f"ds-{i}",
                 "jsonData": {"endpoint": "bench"},
                 "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {
                     "name": "creds", "key": "apiKey"}}}}}
        for i in range(datasource_count)]
    return plugins + datasources


def _templates(kubectl: Callable[..., subprocess.CompletedProcess[str]], kubeconfig: Path,
               namespace: str, work: Path, public_key: Path,
               objects: int) -> dict[str, Any]:
    """What the operator wrote for p-0 and ds-0 in ``namespace`` (a converged run), as the
    bodies the ceiling client sends: the same builders, the same statuses."""
    from benchmarks.operator.ceiling import NAMESPACE_MARK, UID_MARK
    from plugin_operator.controller.config import load_config
    from plugin_operator.controller.events import event_body
    from plugin_operator.controller.podspec import (
        Artifact,
        PluginRef,
        backend_peers_service,
        backend_pod,
        backend_service,
    )
    from plugin_operator.models.resources import parse_plugin_spec

    def get(kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
        return found

    plugin, datasource = get("plugin", "p-0"), get("datasourceinstance", "ds-0")
    config = load_config(environ=_operator_env(kubeconfig, "ceiling", work, public_key))
    spec = parse_plugin_spec(plugin["spec"])
    artifact = Artifact(plugin["status"]["artifact"]["sha256"],
                        int(plugin["status"]["artifact"]["size"]))
    ref = PluginRef(NAMESPACE_MARK, "p-0", UID_MARK)
    events = json.loads(kubectl("-n", namespace, "get", "events", "-o", "json").stdout)["items"]
    by_kind: dict[str, list[dict[str, Any]]] = {"Plugin": [], "DataSourceInstance": []}
    for event in events:
        by_kind.setdefault(event["involvedObject"]["kind"], []).append(event)
    plugin_count = sum(1 for _ in kubectl("-n", namespace, "get", "plugins", "-o",
                                          "name").stdout.split())
    datasource_count = objects - plugin_count

    def event_template(obj: dict[str, Any], kind: str) -> dict[str, Any]:
        sample = by_kind[kind][0] if by_kind[kind] else {"type": "Normal", "reason": "Bench",
                                                         "message": ""}
        body = event_body({**obj, "metadata": {**obj["metadata"], "uid": UID_MARK}},
                          sample["type"], sample["reason"], sample["message"],
                          datetime.now(UTC))
        body["metadata"].pop("namespace", None)
        return body

    templates = {
        "plugin_name": "p-0", "datasource_name": "ds-0",
        "pod": backend_pod(ref, spec, artifact, config, 0),
        "service": backend_service(ref, spec),
        "peers_service": backend_peers_service(ref, spec),
        "plugin_status": {"status": plugin["status"]},
        "datasource_status": {"status": datasource["status"]},
        "plugin_event": event_template(plugin, "Plugin"),
        "datasource_event": event_template(datasource, "DataSourceInstance"),
        "events_per_object": {
            "plugins": round(len(by_kind["Plugin"]) / plugin_count),
            "datasourceinstances": round(len(by_kind["DataSourceInstance"]) / datasource_count)},
    }
    # Whatever names the baseline namespace names the client's own.
    marked: dict[str, Any] = json.loads(json.dumps(templates).replace(namespace,
                                                                      NAMESPACE_MARK))
    return marked


def measure_scale(runs: list[tuple[int, int]], work: Path, profile_largest: bool,
                  ceiling_runs: set[tuple[int, int]], concurrencies: list[int],
                  deadline_s: float) -> tuple[list[ScaleRun], list[CeilingRun], float,
                                               dict[str, Any]]:
    from benchmarks.operator.ceiling import (
        Convergence,
        count_delta,
        create_objects,
        request_counts,
    )

    state = work / "control-plane"
    kubeconfig = Path(_script("control-plane.sh", "start", str(state)))
    kubectl_bin = Path(_script("build-components.sh", "kubectl")) / "kubectl"
    control_plane = [int(p) for p in (state / "pids").read_text().split()]

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(kubectl_bin), "--kubeconfig", str(kubeconfig), *args],
                                input=stdin, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:4])} failed: {result.stderr[-2000:]}")
        return result

    def counts() -> dict[str, float]:
        return asyncio.run(request_counts(kubeconfig))

    def prepare(namespace: str, plugin_count: int, datasource_count: int) -> None:
        kubectl("create", "namespace", namespace)
        kubectl("-n", namespace, "create", "serviceaccount", "default")
        kubectl("-n", namespace, "create", "configmap", "archive",
                f"--from-file=plugin.zip={signed}")
        kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "data": {"apiKey": base64.b64encode(b"bench").decode()}}))
        asyncio.run(create_objects(kubeconfig, namespace,
                                   _scale_objects(plugin_count, datasource_count)))
        time.sleep(5)  # let the apiserver and etcd settle after the burst of creates

    ceilings: list[CeilingRun] = []
    templates: dict[str, Any] = {}
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
            size = (plugin_count, datasource_count)
            if size in ceiling_runs:
                assert templates, "the first --scale run (the baseline) provides the templates"
                template_file = work / "templates.json"
                template_file.write_text(json.dumps(templates))
                # Every level at the smallest ceiling size, the best of them at the others.
                levels = concurrencies if size == min(ceiling_runs) else [
                    min(ceilings, key=lambda c: c.converge_s or 1e9).concurrency]
                for concurrency in levels:
                    namespace = f"ceiling-{plugin_count}-{datasource_count}-c{concurrency}"
                    prepare(namespace, plugin_count, datasource_count)
                    watch = Convergence(kubeconfig, namespace)
                    before, cpu_before, load = counts(), _cpu_s(control_plane), _load()
                    started = time.time()
                    out = subprocess.run(
                        [sys.executable, str(REPO / "benchmarks" / "operator" / "ceiling.py"),
                         str(kubeconfig), namespace, str(template_file), str(concurrency)],
                        capture_output=True, text=True, timeout=3600, check=False)
                    if out.returncode != 0:
                        raise RuntimeError(f"ceiling client failed: {out.stderr[-3000:]}")
                    converged_at = watch.wait(120)
                    cpu = _cpu_s(control_plane) - cpu_before
                    requests = count_delta(before, counts())
                    watch.stop()
                    client = json.loads(out.stdout.strip().splitlines()[-1])
                    ceilings.append(CeilingRun(
                        plugin_count, datasource_count, concurrency,
                        None if converged_at is None else converged_at - started,
                        client["elapsed_s"], client["client_cpu_s"], client["writes"], load,
                        requests, cpu))
                    print(f"ceiling {plugin_count}/{datasource_count} c={concurrency}: "
                          f"{ceilings[-1].converge_s} s (client {client['elapsed_s']:.2f} s, "
                          f"client CPU {client['client_cpu_s']:.2f} s, apiserver+etcd CPU "
                          f"{cpu:.1f} s)", flush=True)
            namespace = f"bench-{plugin_count}-{datasource_count}"
            prepare(namespace, plugin_count, datasource_count)
            profile = (work / f"operator-{namespace}.prof"
                       if profile_largest and size == runs[-1] else None)
            samples: list[tuple[float, float]] = []
            converged: float | None = None
            watch = Convergence(kubeconfig, namespace)
            before, cpu_before, load = counts(), _cpu_s(control_plane), _load()
            started = time.time()
            with running_operator(kubeconfig, namespace, work, public_key, profile) as process:
                limit = started + deadline_s
                while time.time() < limit:
                    converged_at = watch.wait(1.0)
                    samples.append((time.time() - started, _rss_mb(process.pid)))
                    if converged_at is not None:
                        converged = converged_at - started
                        break
                cpu = _cpu_s(control_plane) - cpu_before
                operator_cpu = _cpu_s([process.pid])
                requests = count_delta(before, counts())
                left = len(watch.pending)
                watch.stop()
                # What it holds once the work is done (timers and health rechecks go on).
                time.sleep(10)
                settled = _rss_mb(process.pid)
                peak = _rss_mb(process.pid, "VmHWM")
            if converged is not None:
                left = _unconverged(kubectl, namespace)  # the watch's verdict, checked
            print(f"scale {plugin_count}/{datasource_count}: converged in {converged} s, "
                  f"peak RSS {peak:.0f} MB, operator CPU {operator_cpu:.1f} s, apiserver+etcd "
                  f"CPU {cpu:.1f} s, {left} unconverged at the end", flush=True)
            results.append(ScaleRun(plugin_count, datasource_count, converged, peak, settled,
                                    samples, left, load, requests, cpu, operator_cpu))
            if not templates:
                templates = _templates(kubectl, kubeconfig, namespace, work, public_key,
                                       plugin_count + datasource_count)
        return results, ceilings, idle_rss, templates
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
                  scale: dict[str, Any] | None, samples: int) -> None:
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
        data["scale"] = scale
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
            for metric in ("converge_s", "peak_rss_mb", "settled_rss_mb", "operator_cpu_s",
                           "apiserver_cpu_s"):
                value = run_.get(metric)
                writer.writerow(["scale", label, 0, metric,
                                 "" if value is None else f"{value:.2f}"])
        for ceiling in (data["scale"] or {}).get("ceilings", []):
            label = (f"{ceiling['plugins']}p+{ceiling['datasources']}ds"
                     f"@c{ceiling['concurrency']}")
            for metric in ("converge_s", "client_s", "client_cpu_s", "apiserver_cpu_s"):
                value = ceiling.get(metric)
                writer.writerow(["ceiling", label, 0, metric,
                                 "" if value is None else f"{value:.2f}"])
    _write_markdown(data)
    _plot(data)
    _plot_scale(data)


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def _best_ceiling(scale: dict[str, Any], plugins: int,
                  datasources: int) -> dict[str, Any] | None:
    found = [c for c in scale.get("ceilings", []) if (c["plugins"], c["datasources"]) ==
             (plugins, datasources) and c["converge_s"] is not None]
    return min(found, key=lambda c: c["converge_s"]) if found else None


def _request_totals(requests: dict[str, int]) -> dict[str, int]:
    """Requests by 'VERB resource' (codes summed; errors apart), without the apiserver's
    own bookkeeping."""
    out: dict[str, int] = {}
    for key, count in requests.items():
        verb, resource_, code = key.split(" ")
        if resource_ in ("", "namespaces", "leases", "ipaddresses", "endpoints",
                         "customresourcedefinitions", "limitranges"):
            continue
        label = f"{verb} {resource_}" + ("" if code.startswith("2") else f" ({code})")
        out[label] = out.get(label, 0) + count
    return out


def _scale_markdown(scale: dict[str, Any]) -> list[str]:
    ceilings = scale.get("ceilings") or []
    lines = [
        "## (b) Convergence against the apiserver's own ceiling (throw-away control plane)", "",
        "etcd + kube-apiserver only (hack/control-plane.sh), everything on this machine: "
        "backend pods are created but never scheduled, so every Plugin ends `Starting` and "
        "every DataSourceInstance reports that its Plugin has no ready backend. Each run "
        "gets a fresh namespace whose objects exist before the client starts; converged = "
        "every Plugin's and DataSourceInstance's status.observedGeneration equals its "
        "generation, as seen by a watch started before the client, timed from the client's "
        "process start (so the operator's start-up counts against it). RSS from /proc "
        "(VmHWM = peak). CPU = user + system seconds during the run; apiserver+etcd CPU is "
        "what the run cost the control plane.", "",
        f"Load average (1/5/15 min) at the start: {scale.get('load_at_start', '?')}; at the "
        f"end: {scale.get('load_at_end', '?')}. Idle operator (no objects): "
        f"{scale['idle_rss_mb']:.0f} MB RSS.", ""]
    if ceilings:
        sizes = scale.get("body_bytes") or {}
        events = scale.get("events_per_object") or {}
        lines += [
            "### The ceiling: a minimal client doing the same writes", "",
            "`benchmarks/operator/ceiling.py`, Python asyncio + aiohttp with pre-serialised "
            "bodies (its CPU is in the table: well under what the apiserver spends, so the "
            "client is not what limits it). What it does, and nothing else: list Plugins and "
            "DataSourceInstances (pages of 500, as the operator's watches start), GET the "
            "ConfigMap and the Secret once; then per Plugin: POST its backend pod, "
            "server-side apply its Service and its headless peers Service, one JSON merge "
            "patch of its status; per DataSourceInstance: one JSON merge patch of its status; "
            f"and {events.get('plugins', 0)} Event(s) per Plugin, "
            f"{events.get('datasourceinstances', 0)} per DataSourceInstance, the numbers the "
            "operator posted in the baseline run. The bodies are the operator's own: pod and "
            "Services from controller/podspec.py, statuses copied from what the operator "
            "wrote for p-0 and ds-0 in the baseline run (bytes: "
            + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ").", "",
            "| Plugins | DataSourceInstances | in flight | converged after | client's own "
            "time | client CPU | apiserver+etcd CPU | requests | load (1 min) |",
            "|---|---|---|---|---|---|---|---|---|"]
        for c in ceilings:
            lines.append(
                f"| {c['plugins']} | {c['datasources']} | {c['concurrency']} | "
                f"{_fmt(c['converge_s'])} | {_fmt(c['client_s'])} | "
                f"{_fmt(c['client_cpu_s'])} | {_fmt(c['apiserver_cpu_s'])} | "
                f"{c['writes']} | {c['load_avg'].split()[0] if c['load_avg'] else '?'} |")
        lines.append("")
    lines += ["### Our operator", "",
              "| Plugins | DataSourceInstances | converged after | ceiling (best) | ratio | "
              "per 1,000 objects | peak RSS | RSS 10 s later | operator CPU | "
              "apiserver+etcd CPU | load (1 min) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in scale["runs"]:
        best = _best_ceiling(scale, r["plugins"], r["datasources"])
        ratio = (r["converge_s"] / best["converge_s"]
                 if best and r["converge_s"] is not None else None)
        objects = r["plugins"] + r["datasources"]
        converged = (_fmt(r["converge_s"]) if r["converge_s"] is not None else
                     f"not in time ({r.get('unconverged_at_end', '?')} left)")
        lines.append(
            f"| {r['plugins']} | {r['datasources']} | {converged} | "
            f"{_fmt(best['converge_s']) if best else '-'} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'-' if r['converge_s'] is None else _fmt(r['converge_s'] * 1000 / objects)} | "
            f"{r['peak_rss_mb']:.0f} MB | {r['settled_rss_mb']:.0f} MB | "
            f"{_fmt(r.get('operator_cpu_s'))} | {_fmt(r.get('apiserver_cpu_s'))} | "
            f"{r.get('load_avg', '?').split()[0] if r.get('load_avg') else '?'} |")
    lines.append("")
    target = tuple(scale.get("target") or ())
    target_run = next((r for r in scale["runs"] if (r["plugins"], r["datasources"]) == target),
                      None)
    if target_run is not None:
        best = _best_ceiling(scale, *target)
        ours = _request_totals(target_run.get("requests") or {})
        theirs = _request_totals(best.get("requests") or {}) if best else {}
        if ours:
            lines += [f"### What each sent the apiserver at {target[0]} + {target[1]}", "",
                      "The apiserver's own counters (apiserver_request_total) from the "
                      "client's start until convergence, by verb and resource (APPLY = "
                      "server-side apply; errors by code). Both columns include the "
                      "benchmark's convergence watch (one WATCH per kind); the operator's "
                      "also its start-up lists and watches.", "",
                      "| request | operator | per Plugin | ceiling client | per Plugin |",
                      "|---|---|---|---|---|"]
            plugins = target_run["plugins"]
            for label in sorted(set(ours) | set(theirs)):
                lines.append(f"| {label} | {ours.get(label, 0)} | "
                             f"{ours.get(label, 0) / plugins:.2f} | {theirs.get(label, 0)} | "
                             f"{theirs.get(label, 0) / plugins:.2f} |")
            lines.append("")
        converged = target_run["converge_s"]
        ratio = (converged / best["converge_s"] if best and converged is not None else None)
        lines += [
            "| target | measured | met |", "|---|---|---|",
            f"| {target[0]} Plugins + {target[1]} DataSourceInstances converged <= "
            f"{TARGETS['ceiling_ratio']}x the ceiling | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{_met(None if ratio is None else ratio <= TARGETS['ceiling_ratio'])} |",
            f"| peak RSS <= {TARGETS['rss_mb']:.0f} MB | "
            f"{target_run['peak_rss_mb']:.0f} MB | "
            f"{_met(target_run['peak_rss_mb'] <= TARGETS['rss_mb'])} |",
            f"| (earlier target) converged <= {TARGETS['converge_s']:.0f} s | "
            f"{_fmt(target_run['converge_s'])} | "
            f"{_met(None if converged is None else converged <= TARGETS['converge_s'])} |",
            ""]
    return lines


# (label, measurement, metric) of each row of the cluster table, in order.
CLUSTER_ROWS = [
    ("crash -> serving, operator-owned pod (the host restarts it)",
     "crash_operator", "serving_s"),
    ("crash -> Ready again (0: stayed Ready), operator-owned pod", "crash_operator", "ready_s"),
    ("crash -> serving, kubelet restarts the container (bare pod)",
     "crash_kubelet", "serving_s"),
    ("crash -> Ready, kubelet restarts the container (bare pod)", "crash_kubelet", "ready_s"),
    ("2nd crash in the same pod at once -> serving", "crash_repeated", "serving_s"),
    ("pod deleted -> replacement serving (operator)", "replace_deleted", "serving_s"),
    ("pod deleted -> replacement Ready (operator)", "replace_deleted", "ready_s"),
    ("kubectl apply -> first successful call (artifact cached)",
     "apply_first_call", "first_call_s"),
    ("kubectl apply -> pod Ready", "apply_first_call", "ready_s"),
]


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
                  *(_row(label, values(name, metric)) for label, name, metric in CLUSTER_ROWS),
                  ""]
        crash_median = summary(values("crash_operator", "serving_s")).get("median")
        apply_median = summary(values("apply_first_call", "first_call_s")).get("median")
        replace_median = summary(values("replace_deleted", "serving_s")).get("median")
        replaced_in_time = (None if replace_median is None
                            else replace_median <= TARGETS["replace_s"])
        lines += ["| target | measured (median) | met |", "|---|---|---|",
                  f"| deleted pod's replacement serving <= {TARGETS['replace_s']} s | "
                  f"{_fmt(replace_median)} | {_met(replaced_in_time)} |",
                  f"| crashed backend serving again <= {TARGETS['crash_s']} s | "
                  f"{_fmt(crash_median)} | "
                  f"{_met(None if crash_median is None else crash_median <= TARGETS['crash_s'])} |",
                  f"| apply -> first call <= {TARGETS['apply_s']} s | {_fmt(apply_median)} | "
                  f"{_met(None if apply_median is None else apply_median <= TARGETS['apply_s'])} |",
                  ""]
    scale = data.get("scale")
    if scale:
        lines += _scale_markdown(scale)
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
        axes[1].axhline(TARGETS["rss_mb"], color="tab:red", linestyle=":",
                        label=f"{TARGETS['rss_mb']:.0f} MB")
        axes[1].set_xlabel("seconds since operator start (until converged)")
        axes[1].set_ylabel("operator RSS (MB)")
        axes[1].set_title("(b) control plane")
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "operator-recovery.png", dpi=100)


def _plot_scale(data: dict[str, Any]) -> None:
    scale = data.get("scale")
    if not scale or not scale.get("runs"):
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]); no plot", file=sys.stderr)
        return
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = scale["runs"]
    labels = [f"{r['plugins']:,} + {r['datasources']:,}" for r in runs]
    ours = [r["converge_s"] or 0.0 for r in runs]
    best = [_best_ceiling(scale, r["plugins"], r["datasources"]) for r in runs]
    ceiling = [b["converge_s"] if b else 0.0 for b in best]
    positions = list(range(len(runs)))
    axes[0].bar([p - 0.2 for p in positions], ceiling, width=0.4, label="ceiling (best)",
                color="tab:gray")
    axes[0].bar([p + 0.2 for p in positions], ours, width=0.4, label="operator",
                color="tab:blue")
    for p, (o, c) in enumerate(zip(ours, ceiling, strict=True)):
        if o and c:
            axes[0].annotate(f"{o / c:.2f}x", (p + 0.2, o), ha="center", va="bottom")
    axes[0].set_xticks(positions, labels)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("Plugins + DataSourceInstances")
    axes[0].set_ylabel("seconds to converge (log)")
    axes[0].set_title("operator vs. the apiserver's ceiling")
    axes[0].legend()
    for r in runs:
        points = r["rss_samples"]
        axes[1].plot([p[0] for p in points], [p[1] for p in points],
                     label=f"{r['plugins']:,} + {r['datasources']:,}")
    axes[1].axhline(TARGETS["rss_mb"], color="tab:red", linestyle=":",
                    label=f"{TARGETS['rss_mb']:.0f} MB")
    axes[1].set_xscale("symlog", linthresh=10)
    axes[1].set_xlabel("seconds since operator start (until converged)")
    axes[1].set_ylabel("operator RSS (MB)")
    axes[1].set_title("operator memory while converging")
    axes[1].legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "operator-scale.png", dpi=100)


def _sizes(parser: argparse.ArgumentParser, texts: list[str]) -> list[tuple[int, int]]:
    try:
        return [(int(p), int(d)) for p, d in (s.split(":") for s in texts)]
    except ValueError:
        parser.error("sizes are PLUGINS:DATASOURCES pairs such as 1000:5000")
    raise AssertionError


def main() -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["cluster", "scale", "all"], default="all")
    parser.add_argument("--samples", type=int, default=7, help="samples per recovery figure")
    parser.add_argument("--scale", nargs="+", default=["100:500", "1000:5000", "10000:50000"],
                        help="PLUGINS:DATASOURCES operator runs, in order; the first one is "
                        "the baseline whose statuses the ceiling client copies")
    parser.add_argument("--ceiling", nargs="*", default=["1000:5000", "10000:50000"],
                        help="sizes at which the ceiling client runs too (all --concurrency "
                        "levels at the smallest, the best level at the others)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[4, 16, 64],
                        help="requests in flight for the ceiling client")
    parser.add_argument("--target", default="1000:5000",
                        help="the run the targets (time ratio, peak RSS) are checked on")
    parser.add_argument("--deadline", type=float, default=900.0,
                        help="seconds an operator run may take before it counts as not "
                        "converged")
    parser.add_argument("--profile", action="store_true",
                        help="run the operator of the largest scale run under cProfile")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where the results go (default benchmarks/results)")
    args = parser.parse_args()
    if args.samples < 2:
        parser.error("--samples must be at least 2 to report a spread")
    runs = _sizes(parser, args.scale)
    ceiling_runs = set(_sizes(parser, args.ceiling)) & set(runs)
    target = _sizes(parser, [args.target])[0]
    if runs[0] in ceiling_runs:
        parser.error("the first --scale run is the baseline; the ceiling needs its statuses")
    RESULTS = args.results
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        work = Path(tmp)
        cluster_results: ClusterResults | None = None
        facts: dict[str, str] = {}
        scale: dict[str, Any] | None = None
        if args.part in ("cluster", "all"):
            cluster_results, facts = asyncio.run(measure_cluster(args.samples, work))
        if args.part in ("scale", "all"):
            started_load = _load()
            runs_, ceilings, idle, templates = measure_scale(
                runs, work, args.profile, ceiling_runs, args.concurrency, args.deadline)
            scale = {"idle_rss_mb": idle, "runs": [dict(r.__dict__) for r in runs_],
                     "ceilings": [dict(c.__dict__) for c in ceilings],
                     "target": list(target), "load_at_start": started_load,
                     "load_at_end": _load(),
                     "body_bytes": {k: len(json.dumps(v)) for k, v in templates.items()
                                    if isinstance(v, dict) and k != "events_per_object"},
                     "events_per_object": templates.get("events_per_object")}
            if args.profile:
                for prof in work.glob("*.prof"):
                    target_file = RESULTS / "operator-profile.txt"
                    import pstats
                    with target_file.open("w") as out:
                        stats = pstats.Stats(str(prof), stream=out)
                        stats.sort_stats("cumulative").print_stats(40)
                        stats.sort_stats("tottime").print_stats(40)
        write_results(cluster_results, facts, scale, args.samples)
    print((RESULTS / "operator.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
