"""An unmodified Grafana, attached with a GrafanaAttachment, sends its plugin calls to our pods.

Grafana's server cannot be installed here, so a Deployment of our image stands in for it and
the test plays Grafana's side the way Grafana's source does: grafana-client (tests/compat-go,
on hashicorp/go-plugin and the Go SDK's pluginv2 clients) runs inside that pod and launches
the unmodified plugin executable from the plugins folder the operator installed, with
Grafana's handshake, protocols and environment. The executable finds its backend's address in
that environment, acts as a locator, and every call goes to the backend pods.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kube import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY
from tests.e2e.operator.conftest import (
    API_VERSION,
    SAMPLE_GO_ID,
    TESTDATA_ID,
    ArchiveServer,
    Plugins,
    SignedArchives,
    plugin_manifest,
    sha256_of,
)
from tests.support.samples import build_sample_go

GRAFANA = "grafana"
PLUGINS_PATH = "/var/lib/grafana/plugins"
TOOLS = "/opt/grafana-tools"
# Grafana before 12.4 passes its whole environment to plugins; from 12.4 on only to those
# [plugins] forward_host_env_vars names (GF_PLUGINS_FORWARD_HOST_ENV_VARS, which the
# attachment sets). grafana-client applies the rule of the version it is told.
OLD_GRAFANA, NEW_GRAFANA = "12.3.0", "13.0.0"
# Upload a file from stdin into the stand-in Grafana's tools volume.
UPLOAD = ("import os, shutil, sys\n"
          "target = sys.argv[1]\n"
          "with open(target + '.part', 'wb') as out:\n"
          "    shutil.copyfileobj(sys.stdin.buffer, out)\n"
          "os.chmod(target + '.part', int(sys.argv[2], 8))\n"
          "os.replace(target + '.part', target)\n")
# go-plugin's Controller.Shutdown, as any go-plugin client sends it, to a backend's port.
SHUTDOWN = ("import grpc, sys\n"
            "channel = grpc.insecure_channel(sys.argv[1])\n"
            "stop = channel.unary_unary('/plugin.GRPCController/Shutdown')\n"
            "try:\n"
            "    stop(b'', timeout=5)\n"
            "    print('SERVED')\n"
            "except grpc.RpcError as exc:\n"
            "    print(exc.code().name)\n")


def _grafana_deployment(image: str) -> dict[str, Any]:
    """Grafana's place: a Deployment whose container runs nothing but waits; the test execs
    Grafana's plugin client in it."""
    labels = {"app": GRAFANA}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": GRAFANA},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "securityContext": RESTRICTED_POD_SECURITY,
                     "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": GRAFANA, "image": image, "imagePullPolicy": "IfNotPresent",
                         "command": ["sleep", "infinity"],
                         "env": [{"name": "GF_PATHS_PLUGINS", "value": PLUGINS_PATH}],
                         "securityContext": RESTRICTED_CONTAINER_SECURITY,
                         "volumeMounts": [{"name": "data", "mountPath": "/var/lib/grafana"},
                                          {"name": "tools", "mountPath": TOOLS},
                                          {"name": "tmp", "mountPath": "/tmp"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}},
                                 {"name": "tools", "emptyDir": {}},
                                 {"name": "tmp", "emptyDir": {}}]}}}}


def _attachment(plugins: list[str]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "GrafanaAttachment",
            "metadata": {"name": GRAFANA},
            "spec": {"workloadRef": {"kind": "Deployment", "name": GRAFANA},
                     "container": GRAFANA, "plugins": [{"name": p} for p in plugins],
                     "datasources": {"provision": True}}}


API_KEY = "e2e-api-key"  # the Go sample checks jsonData.expectedApiKey against secure apiKey
SECRET_ONLY = "e2e-only-in-the-secret"  # a secure value nothing else repeats


def _datasource(name: str, plugin: str, uid: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DataSourceInstance", "metadata": {"name": name},
            "spec": {"pluginRef": {"name": plugin}, "uid": uid, **spec}}


def _api_key_secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "go-key"},
            "stringData": {"apiKey": API_KEY, "password": SECRET_ONLY}}


@dataclass
class Grafana:
    """The stand-in Grafana pod and Grafana's plugin client inside it."""

    plugins: Plugins
    pod: str

    def upload(self, source: Path, target: str, mode: str = "755") -> None:
        cluster = self.plugins.cluster
        with source.open("rb") as data:
            result = subprocess.run(
                [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
                 self.plugins.namespace, "exec", "-i", self.pod, "-c", GRAFANA, "--",
                 "python3", "-c", UPLOAD, target, mode],
                stdin=data, capture_output=True, timeout=300, check=False)
        assert result.returncode == 0, f"uploading {source}: {result.stderr!r}"

    def exec(self, *command: str, stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cluster = self.plugins.cluster
        return subprocess.run(
            [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
             self.plugins.namespace, "exec", "-i", self.pod, "-c", GRAFANA, "--", *command],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def plugin_client(self, executable: str, plan: dict[str, Any], *extra: str,
                      grafana_version: str = NEW_GRAFANA,
                      timeout: float = 120) -> dict[str, Any]:
        """Launch ``executable`` the way Grafana ``grafana_version`` does, with the
        container's environment as Grafana's own, and run ``plan``; the JSON summary."""
        command = " ".join([f"{TOOLS}/grafana-client", "--plugin", executable, "--plan", "-",
                            "--grafana-version", grafana_version, "--peers",
                            '--forward-host-env-vars "$GF_PLUGINS_FORWARD_HOST_ENV_VARS"',
                            *extra])
        result = self.exec("sh", "-c", command, stdin=json.dumps(plan), timeout=timeout)
        assert result.returncode == 0, f"grafana-client failed:\n{result.stderr[-4000:]}"
        summary: dict[str, Any] = json.loads(result.stdout)
        return summary


@pytest.fixture
def grafana(plugins: Plugins, archive_server: ArchiveServer,
            signed_archives: SignedArchives) -> Iterator[Grafana]:
    """Both samples with two replicas each, attached to the stand-in Grafana."""
    go_url = archive_server.publish(signed_archives.go, "attach-sample-go.zip")
    plugins.archive_configmap("attach-testdata", signed_archives.python_v1)
    plugins.apply(
        plugin_manifest("sample-go", plugin_id=SAMPLE_GO_ID, version="1.0.0", url=go_url,
                        sha256=sha256_of(signed_archives.go), replicas=2),
        plugin_manifest("testdata", configmap="attach-testdata", replicas=2),
        _api_key_secret(),
        _datasource("go-ds", "sample-go", "attached-go", jsonData={"expectedApiKey": API_KEY},
                    secureJsonDataFrom={
                        "apiKey": {"secretKeyRef": {"name": "go-key", "key": "apiKey"}},
                        "password": {"secretKeyRef": {"name": "go-key", "key": "password"}}}),
        _datasource("python-ds", "testdata", "attached-python"),
        _grafana_deployment(plugins.cluster.image))
    plugins.wait_phase("sample-go", "Running")
    plugins.wait_phase("testdata", "Running")
    plugins.apply(_attachment(["sample-go", "testdata"]))
    status = plugins.wait_for("the attachment Ready", lambda: (
        s := plugins.status("grafanaattachment", GRAFANA)) and any(
        c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or []) and s,
        timeout_s=300)
    assert sorted(p["pluginId"] for p in status["plugins"]) == [SAMPLE_GO_ID, TESTDATA_ID]
    assert sorted(status["datasources"]) == ["attached-go", "attached-python"]
    assert SECRET_ONLY not in json.dumps(plugins.get("configmap", "attach-grafana-datasources"))
    handle = Grafana(plugins, _grafana_pod(plugins, f"install-{SAMPLE_GO_ID}",
                                           f"install-{TESTDATA_ID}"))
    handle.upload(build_sample_go("compat-go")["GRAFANA_CLIENT"], f"{TOOLS}/grafana-client")
    handle.upload(signed_archives.public_key, f"{TOOLS}/e2e-signer.asc", "644")
    try:
        yield handle
    finally:
        _remove_grafana(plugins)


def _remove_grafana(plugins: Plugins) -> None:
    """Detach, then delete the stand-in Grafana and wait for its pods to go, so the next
    test's Deployment of the same name starts from nothing."""
    plugins.kubectl("delete", "grafanaattachment", GRAFANA, "--ignore-not-found",
                    "--wait=true", "--timeout=60s", check=False)
    plugins.kubectl("delete", "deployment", GRAFANA, "--ignore-not-found",
                    "--cascade=foreground", "--wait=true", "--timeout=60s", check=False)


def _grafana_pod(plugins: Plugins, *containers: str) -> str:
    """The one Grafana pod of the finished rollout: it carries ``containers`` (init or not)
    and is ready, and no other pod of the workload is left."""
    def settled() -> str | None:
        pods = [p for p in plugins.get("pods", "-l", f"app={GRAFANA}")["items"]
                if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != 1:
            return None
        spec = pods[0]["spec"]
        names = {c["name"] for c in spec.get("initContainers", []) + spec["containers"]}
        statuses = (pods[0].get("status") or {}).get("containerStatuses") or []
        ready = bool(statuses) and all(s.get("ready") for s in statuses)
        return pods[0]["metadata"]["name"] if ready and set(containers) <= names else None
    name: str = plugins.wait_for("one ready Grafana pod with our containers", settled,
                                 timeout_s=180)
    return name


def _plan(plugin_id: str, uid: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """What Grafana sends for the provisioned datasource ``uid``."""
    return {"pluginId": plugin_id, "orgId": 1,
            "datasource": {"id": 7, "uid": uid, "name": uid,
                           "jsonData": {"expectedApiKey": API_KEY,
                                        "endpoint": "https://metrics.example.invalid"},
                           "secureJsonData": {"apiKey": API_KEY}, "lastUpdatedMS": 1},
            "calls": calls}


GO_CALLS: list[dict[str, Any]] = [
    {"call": "health"},
    {"call": "query", "format": "json", "fromMs": 1_700_000_000_000, "toMs": 1_700_000_060_000,
     "queries": [{"refId": "A", "queryType": "randomWalk"}]},
    {"call": "resource", "path": "stream?chunks=2"},
    {"call": "stream", "path": "ticks", "data": {"intervalMs": 20}, "packets": 2},
]
PYTHON_CALLS: list[dict[str, Any]] = [
    {"call": "health"},
    {"call": "query", "format": "json", "fromMs": 1_700_000_000_000, "toMs": 1_700_000_060_000,
     "queries": [{"refId": "A", "scenario": "random_walk"}]},
    {"call": "resource", "path": "whoami"},
    {"call": "stream", "path": "counter", "data": {"count": 2, "interval": 0.01},
     "packets": 2},
]


def _backend_logs(plugins: Plugins, plugin: str) -> str:
    return "".join(plugins.kubectl("logs", p["metadata"]["name"], "-c", "plugin",
                                   check=False).stdout for p in plugins.pods(plugin))


def _restarts(plugins: Plugins, plugin: str) -> dict[str, int]:
    return plugins.restarts(plugin)


@pytest.mark.parametrize(("plugin", "plugin_id", "uid", "calls", "version"), [
    ("sample-go", SAMPLE_GO_ID, "attached-go", GO_CALLS, NEW_GRAFANA),
    ("testdata", TESTDATA_ID, "attached-python", PYTHON_CALLS, OLD_GRAFANA),
], ids=["go", "python"])
def test_grafana_calls_reach_the_backend_pods(grafana: Grafana, plugin: str, plugin_id: str,
                                             uid: str, calls: list[dict[str, Any]],
                                             version: str) -> None:
    plugins = grafana.plugins
    folder = f"{PLUGINS_PATH}/{plugin_id}"
    # Grafana's own signature check passes on the installed folder: it is byte-identical.
    verified = grafana.exec("plugin-operator", "verify", folder, "--json", "--trusted-key",
                            f"{TOOLS}/e2e-signer.asc")
    verdict = json.loads(verified.stdout)
    assert verdict["allowed"] is True, verified.stdout
    assert verdict["plugins"][0]["signature"]["status"] == "valid", verified.stdout
    manifest = grafana.exec("cat", f"{folder}/plugin.json")
    executable = json.loads(manifest.stdout)["executable"]
    before = _restarts(plugins, plugin)

    summary = grafana.plugin_client(f"{folder}/{executable}_linux_amd64",
                                    _plan(plugin_id, uid, calls), grafana_version=version)
    # The executable acted as a locator: go-plugin dialled the Service's attach port, and the
    # process Grafana started holds no socket of its own.
    launched = summary["launched"]
    assert launched["network"] == "tcp", launched
    assert launched["address"].endswith(":11000"), launched
    assert launched["openSockets"] == 0, launched
    health, queried, resource, streamed = summary["results"]
    assert health["status"] == "OK", health
    assert queried["responses"]["A"].get("error") is None, queried
    assert queried["responses"]["A"]["frames"], queried
    assert resource.get("error") is None, resource
    assert resource.get("chunks") or resource.get("body"), resource
    assert len(streamed["packets"]) == 2, streamed
    if plugin == "testdata":  # the Python sample says which process answered
        backends = {p["metadata"]["name"] for p in plugins.pods(plugin)}
        assert json.loads(resource["body"])["hostname"] in backends, resource
    # Grafana's Kill(): Shutdown (refused by our side), then the local locator is killed.
    assert summary["kill"]["exited"] is True, summary["kill"]

    # The backends served the calls, and nothing the client did stopped them.
    assert _restarts(plugins, plugin) == before
    assert plugins.wait_for("the calls in the backend pods' logs",
                            lambda: uid in _backend_logs(plugins, plugin), timeout_s=30)
    again = grafana.plugin_client(f"{folder}/{executable}_linux_amd64",
                                  _plan(plugin_id, uid, calls[:1]), grafana_version=version)
    assert again["results"][0]["status"] == "OK"
    assert _restarts(plugins, plugin) == before


def test_go_plugin_shutdown_leaves_every_backend_serving(grafana: Grafana) -> None:
    plugins = grafana.plugins
    before = _restarts(plugins, "sample-go")
    address = f"plugin-sample-go.{plugins.namespace}.svc:11000"
    for _ in range(4):  # balanced over both replicas
        answered = grafana.exec("python3", "-c", SHUTDOWN, address)
        assert answered.stdout.strip() == "UNIMPLEMENTED", answered.stdout + answered.stderr
    # Both replicas still answer Grafana's calls, in the same processes.
    executable = f"{PLUGINS_PATH}/{SAMPLE_GO_ID}/gpx_sample_go_linux_amd64"
    summary = grafana.plugin_client(executable, _plan(SAMPLE_GO_ID, "attached-go", [
        {"call": "health"}]), "--duration", "2s", "--interval", "100ms")
    (health,) = summary["repeat"]["calls"]
    assert health["failed"] == 0, health
    assert health["ok"] >= 10, health
    assert len(health["peers"]) >= 1, health
    assert _restarts(plugins, "sample-go") == before
    assert len(plugins.pods("sample-go")) == 2


def test_losing_the_replica_in_use_costs_at_most_one_call(grafana: Grafana) -> None:
    """Grafana keeps one connection; a backend replica deleted under it costs at most one
    failed call, and the client recovers without being restarted."""
    plugins = grafana.plugins
    executable = f"{PLUGINS_PATH}/{SAMPLE_GO_ID}/gpx_sample_go_linux_amd64"
    plan = _plan(SAMPLE_GO_ID, "attached-go", [GO_CALLS[1]])
    cluster = plugins.cluster
    command = " ".join([f"{TOOLS}/grafana-client", "--plugin", executable, "--plan", "-",
                        "--grafana-version", NEW_GRAFANA, "--peers", "--duration", "12s",
                        "--interval", "50ms",
                        '--forward-host-env-vars "$GF_PLUGINS_FORWARD_HOST_ENV_VARS"'])
    running = subprocess.Popen(
        [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), "-n",
         plugins.namespace, "exec", "-i", grafana.pod, "-c", GRAFANA, "--", "sh", "-c",
         command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    with ThreadPoolExecutor(1) as pool:
        session = pool.submit(running.communicate, json.dumps(plan), 120)
        victim = plugins.pods("sample-go")[0]["metadata"]["name"]
        time.sleep(3)  # let the session run on both replicas first; the client measures
        plugins.kubectl("delete", "pod", victim, "--wait=false")
        try:
            out, err = session.result()
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 0, err[-4000:]
    (queries,) = json.loads(out)["repeat"]["calls"]
    assert queries["ok"] >= 100, queries
    assert queries["failed"] <= 1, queries
    assert len(queries["peers"]) == 1, "one connection, one address: Grafana's client"


def test_a_sidecar_plugin_serves_grafana_on_loopback(plugins: Plugins,
                                                     signed_archives: SignedArchives) -> None:
    """Sidecar mode with Grafana's own workload as the target: the backend runs in its own
    container (its own limits and restarts) inside Grafana's pod, reached on 127.0.0.1."""
    plugins.archive_configmap("attach-side", signed_archives.python_v1)
    plugins.apply(_grafana_deployment(plugins.cluster.image),
                  plugin_manifest("testdata-side", configmap="attach-side", mode="Sidecar",
                                  sidecar={"targetRef": {"kind": "Deployment",
                                                         "name": GRAFANA}},
                                  resources={"limits": {"memory": "256Mi"}}),
                  _datasource("side-ds", "testdata-side", "attached-side"))
    try:
        plugins.apply(_attachment(["testdata-side"]))
        status = plugins.wait_for("the sidecar attachment Ready", lambda: (
            s := plugins.status("grafanaattachment", GRAFANA)) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or [])
            and s, timeout_s=300)
        (entry,) = status["plugins"]
        assert entry["mode"] == "Sidecar"
        assert entry["address"].startswith("127.0.0.1:")
        grafana = Grafana(plugins, _grafana_pod(plugins, "plugin-testdata-side",
                                                f"install-{TESTDATA_ID}"))
        pod = plugins.get("pod", grafana.pod)
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        assert containers["plugin-testdata-side"]["resources"]["limits"]["memory"] == "256Mi"
        grafana.upload(build_sample_go("compat-go")["GRAFANA_CLIENT"],
                       f"{TOOLS}/grafana-client")
        summary = grafana.plugin_client(
            f"{PLUGINS_PATH}/{TESTDATA_ID}/gpx_testdata_python_linux_amd64",
            _plan(TESTDATA_ID, "attached-side", PYTHON_CALLS[:2]))
        health, queried = summary["results"]
        assert health["status"] == "OK", health
        assert queried["responses"]["A"]["frames"], queried
    finally:
        _remove_grafana(plugins)


def test_provisioned_datasources_read_their_secrets_from_files(grafana: Grafana) -> None:
    """What Grafana's provisioning would read: the file, and each $__file{...} it names."""
    document = grafana.exec("cat", "/etc/grafana/provisioning/datasources/plugin-operator.yaml")
    assert document.returncode == 0, document.stderr
    assert SECRET_ONLY not in document.stdout
    provisioned = {d["uid"]: d for d in yaml.safe_load(document.stdout)["datasources"]}
    reference = provisioned["attached-go"]["secureJsonData"]["password"]
    assert reference.startswith("$__file{"), reference
    assert reference.endswith("}"), reference
    read = grafana.exec("cat", reference[len("$__file{"):-1])
    assert read.stdout == SECRET_ONLY
    assert provisioned["attached-python"]["type"] == TESTDATA_ID
