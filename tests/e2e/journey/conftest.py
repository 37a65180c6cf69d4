"""The user's journey on the e2e cluster: the chart installed with Helm, the samples applied
from examples/, queries through the gateway's Service, Prometheus (Debian's package, a host
process of this test on 127.0.0.1) scraping the operator, the gateway and the plugin hosts.

The test process reaches the gateway's Service IP and the pods' IPs directly, as the local
cluster's node (hack/cluster.sh) can; so does Prometheus, whose targets (pod IPs) the test
keeps in file_sd files. NetworkPolicy is enforced on the local cluster by kube-router
(hack/cluster/network-policy.sh).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import HACK, REPO_ROOT, scoped_namespace
from tests.e2e.install import Release, install_release
from tests.e2e.kube import Cluster
from tests.support.net import free_port
from tests.support.samples import package_testdata_python, run
from tests.support.wait import eventually

EXAMPLES = REPO_ROOT / "examples"
PROMETHEUS = Path("/usr/bin/prometheus")
QUERIER = "journey-querier"
# Metrics ports: the operator's and gateway's chart defaults, the host's in every backend pod.
OPERATOR_METRICS_PORT = 8080
GATEWAY_PORT = 8000
BACKEND_METRICS_PORT = 9100


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 180,
             interval_s: float = 1.0, diagnostics: Callable[[], str] = lambda: "") -> Any:
    return eventually(what, probe, timeout_s=timeout_s, interval_s=interval_s,
                      diagnostics=diagnostics, tolerate=(OSError, AssertionError, ValueError))


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Gateway:
    """The gateway's Service, called with a ServiceAccount token bound to a querier Role."""

    base_url: str
    token: str

    def request(self, method: str, path: str, body: Any = None,
                timeout_s: float = 30) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return Response(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read())

    def query(self, uid: str, **model: Any) -> Response:
        return self.request("POST", "/api/ds/query", {
            "from": "now-5m", "to": "now",
            "queries": [{"refId": "A", "datasource": {"uid": uid}, **model}]})


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def query(self, expression: str) -> float | None:
        """The instant value of a scalar-like expression; None when it has no sample."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(address, timeout=10) as answer:
            data = json.load(answer)
        assert data["status"] == "success", data
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as answer:
            active: list[dict[str, Any]] = json.load(answer)["data"]["activeTargets"]
            return active


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    built = subprocess.run([str(HACK / "build-components.sh"), "helm"], capture_output=True,
                           text=True, check=False, timeout=1800)
    assert built.returncode == 0, f"hack/build-components.sh helm failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1]) / "helm"


@pytest.fixture(scope="session")
def network_policy_enforced(cluster: Cluster) -> None:
    """On the local cluster, start kube-router's policy controller (idempotent); kind's
    kindnet enforces NetworkPolicy by itself."""
    if not cluster.local:
        return
    started = subprocess.run([str(HACK / "cluster" / "network-policy.sh"), "up"],
                             capture_output=True, text=True, check=False, timeout=1800)
    assert started.returncode == 0, (
        f"hack/cluster/network-policy.sh up failed:\n{started.stderr[-3000:]}\n"
        f"{cluster.logs_hint}")


@pytest.fixture(scope="session")
def signed_testdata(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """plugins/testdata-python packaged and signed with a key of this session:
    (signed zip, armored public key)."""
    work = tmp_path_factory.mktemp("journey-signed")
    key = work / "journey-signer.asc"
    signed = run(HACK / "sign-plugin.sh", package_testdata_python(work), "--output",
                 work / "testdata.zip", "--key", key, "--generate-key")
    assert signed.returncode == 0, f"hack/sign-plugin.sh failed:\n{signed.stderr}"
    return work / "testdata.zip", key.with_suffix(".pub.asc")


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "journey") as name:
        yield name


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,
            signed_testdata: tuple[Path, Path], network_policy_enforced: None,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    installed = install_release(
        cluster, helm_binary, tmp_path_factory.mktemp("journey-helm"),
        plugin_namespaces=[plugin_namespace],
        trusted_keys={"journey-signer.asc": signed_testdata[1].read_text()},
        prefix="po-journey",
        # Two gateways behind the Service and a PodDisruptionBudget, as users run it, so an
        # upgrade can roll them one at a time; quick replacement of a killed backend.
        values={"gateway": {"replicas": 2, "podDisruptionBudget": {"enabled": True}},
                "operator": {"backoff": {"initial": "1s", "max": "10s", "resetAfter": "1m"}}})
    try:
        yield installed
    finally:
        installed.uninstall()


def example(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


@pytest.fixture(scope="session")
def examples_running(cluster: Cluster, release: Release, plugin_namespace: str,
                     signed_testdata: tuple[Path, Path]) -> None:
    """examples/plugin-testdata-python.yaml and examples/datasourceinstance-testdata.yaml as
    they are, with the archive ConfigMap they name; Running and Healthy."""
    ns = plugin_namespace
    configmap = cluster.kubectl("-n", ns, "create", "configmap", "testdata-python-archive",
                                f"--from-file=plugin.zip={signed_testdata[0]}",
                                "--dry-run=client", "-o", "json").stdout
    cluster.kubectl("-n", ns, "apply", "-f", "-", stdin=configmap)
    cluster.kubectl("-n", ns, "apply", "-f", str(EXAMPLES / "plugin-testdata-python.yaml"),
                    "-f", str(EXAMPLES / "datasourceinstance-testdata.yaml"))

    def diagnostics() -> str:
        return (cluster.kubectl("-n", ns, "get", "plugins,datasourceinstances,pods", "-o",
                                "wide", check=False).stdout
                + release.diagnostics())

    wait_for("Plugin testdata-python Running", lambda: cluster.get(
        ns, "plugin", "testdata-python").get("status", {}).get("phase") == "Running",
        timeout_s=240, diagnostics=diagnostics)
    wait_for("DataSourceInstance testdata healthy", lambda: cluster.get(
        ns, "datasourceinstance", "testdata").get("status", {}).get("health", {})
        .get("status") == "OK", timeout_s=180, diagnostics=diagnostics)


@pytest.fixture(scope="session")
def gateway(cluster: Cluster, release: Release, plugin_namespace: str) -> Gateway:
    ns = plugin_namespace
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": QUERIER},
            "rules": [{"apiGroups": ["plugin-operator.dev"],
                       "resources": ["datasourceinstances", "plugins"],
                       "verbs": ["get", "list", "query"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": QUERIER},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": QUERIER},
               "subjects": [{"kind": "ServiceAccount", "name": QUERIER, "namespace": ns}]}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": QUERIER}}
    cluster.apply(ns, account, role, binding)
    token = cluster.kubectl("-n", ns, "create", "token", QUERIER, "--duration=2h").stdout.strip()
    service = cluster.get(release.namespace, "service", release.gateway_deployment)
    return Gateway(f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}",
                   token)


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    namespace: str
    component: str  # app.kubernetes.io/component of the pods
    port: int


def scrape_jobs(release: Release, plugin_namespace: str) -> list[ScrapeJob]:
    return [ScrapeJob("operator", release.namespace, "operator", OPERATOR_METRICS_PORT),
            ScrapeJob("gateway", release.namespace, "gateway", GATEWAY_PORT),
            ScrapeJob("plugin-hosts", plugin_namespace, "plugin-backend", BACKEND_METRICS_PORT)]


def prometheus_config(jobs: list[ScrapeJob], targets_dir: Path) -> str:
    """One job per component, its targets from a file the test keeps up to date (Debian's
    Prometheus is built without Kubernetes service discovery)."""
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s",
                   "evaluation_interval": "2s"},
        "scrape_configs": [{
            "job_name": job.name,
            "file_sd_configs": [{"files": [str(targets_dir / f"{job.name}.json")],
                                 "refresh_interval": "2s"}],
        } for job in jobs],
    }
    return yaml.safe_dump(config, sort_keys=False)


def target_groups(cluster: Cluster, job: ScrapeJob) -> list[dict[str, Any]]:
    """The running pods of one component as file_sd target groups, scraped on their pod IPs."""
    pods = cluster.get(job.namespace, "pods", "-l",
                       f"app.kubernetes.io/component={job.component}")["items"]
    return [{"targets": [f"{pod['status']['podIP']}:{job.port}"],
             "labels": {"namespace": job.namespace, "pod": pod["metadata"]["name"]}}
            for pod in pods
            if pod["status"].get("phase") == "Running" and pod["status"].get("podIP")
            and not pod["metadata"].get("deletionTimestamp")]


def write_targets(cluster: Cluster, jobs: list[ScrapeJob], targets_dir: Path) -> None:
    for job in jobs:
        file = targets_dir / f"{job.name}.json"
        partial = file.with_suffix(".tmp")
        partial.write_text(json.dumps(target_groups(cluster, job)))
        partial.replace(file)  # Prometheus never reads a half-written file


def install_prometheus() -> None:
    """apt-get install prometheus without letting the package start its own service (a
    policy-rc.d, as hack/install-deps.sh does; removed again if we created it)."""
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\n# plugin-operator e2e: apt starts no service\nexit 101\n")
        policy.chmod(0o755)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
    try:
        result = subprocess.run(install, capture_output=True, text=True, check=False,
                                timeout=900, env=env)
        if result.returncode != 0:  # stale package lists: refresh once and retry
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False,
                           timeout=600, env=env)
            result = subprocess.run(install, capture_output=True, text=True, check=False,
                                    timeout=900, env=env)
        assert result.returncode == 0, f"apt-get install prometheus failed:\n{result.stderr}"
    finally:
        if created:
            policy.unlink(missing_ok=True)


@contextlib.contextmanager
def running_prometheus(cluster: Cluster, jobs: list[ScrapeJob], work: Path,
                       config: Callable[[list[ScrapeJob], Path], str]) -> Iterator[Prometheus]:
    """Debian's Prometheus (installed with apt when missing) on 127.0.0.1 only, scraping
    ``jobs`` with the configuration ``config`` writes; its file_sd targets follow the pods
    (backends restart, gateways roll) until it stops."""
    if not PROMETHEUS.exists():
        install_prometheus()
    targets_dir = work / "targets"
    targets_dir.mkdir()
    write_targets(cluster, jobs, targets_dir)
    stop = threading.Event()

    def follow_pods() -> None:
        while not stop.wait(2):
            try:
                write_targets(cluster, jobs, targets_dir)
            except (AssertionError, subprocess.SubprocessError, OSError):
                continue  # the apiserver was briefly unavailable; the next round catches up

    follower = threading.Thread(target=follow_pods, daemon=True)
    follower.start()
    config_file = work / "prometheus.yml"
    config_file.write_text(config(jobs, targets_dir))
    port = free_port()
    log = work / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={config_file}",
             f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    handle = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        wait_for("Prometheus ready", lambda: process.poll() is None and urllib.request.urlopen(
            f"{handle.url}/-/ready", timeout=2).status == 200, timeout_s=60,
            diagnostics=lambda: log.read_text()[-3000:])
        yield handle
    finally:
        stop.set()
        follower.join(timeout=30)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(work / "data", ignore_errors=True)


@pytest.fixture(scope="session")
def prometheus(cluster: Cluster, release: Release, plugin_namespace: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with running_prometheus(cluster, scrape_jobs(release, plugin_namespace),
                            tmp_path_factory.mktemp("prometheus"),
                            prometheus_config) as handle:
        yield handle
