"""The real operator process against the real apiserver, with a stand-in for the kubelet.

The test control plane has no kubelet, so pods stay unscheduled; tests play the kubelet's
part by writing pod status through the status subresource, exactly what a kubelet does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import ControlPlane
from tests.support.net import free_port
from tests.support.samples import SignedSample
from tests.support.wait import eventually

CLI = Path(sys.executable).with_name("plugin-operator")
TESTDATA_ID = "plugin-operator-testdata-datasource"


@dataclass
class OperatorProcess:
    plane: ControlPlane
    namespace: str
    workdir: Path
    trusted_key: Path
    artifacts_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.kubeconfig),
            "PLUGIN_OPERATOR_NAMESPACES": self.namespace,
            "PLUGIN_OPERATOR_IMAGE": "plugin-operator.dev/plugin-operator:test",
            "PLUGIN_OPERATOR_ARTIFACTS_DIRECTORY": str(self.workdir / "artifacts"),
            "PLUGIN_OPERATOR_ARTIFACTS_PORT": str(self.artifacts_port),
            "PLUGIN_OPERATOR_ARTIFACTS_URL": f"http://127.0.0.1:{self.artifacts_port}",
            "PLUGIN_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "PLUGIN_OPERATOR_HEALTH_PORT": str(self.health_port),
            "PLUGIN_OPERATOR_TRUSTED_KEYS": str(self.trusted_key),
            "PLUGIN_OPERATOR_ALLOW_UNSIGNED_PLUGINS": TESTDATA_ID,
            "PLUGIN_OPERATOR_BACKOFF_INITIAL": "200ms",
            "PLUGIN_OPERATOR_BACKOFF_MAX": "2s",
            "PLUGIN_OPERATOR_GATEWAY_NAMESPACE": self.namespace,
            "PLUGIN_OPERATOR_HEALTH_CHECK_TIMEOUT": "5s",
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(CLI), "operator", "--log-level", "DEBUG"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def logs(self) -> str:
        return "\n".join((self.workdir / f"operator-{n}.log").read_text(errors="replace")
                         for n in range(1, self.starts + 1))

    # --- reading and writing the world -------------------------------------------------
    def kubectl(self, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl("-n", self.namespace, *args, stdin=stdin, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.plane.get_json("-n", self.namespace, kind, name)

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def pods(self, plugin: str) -> list[dict[str, Any]]:
        data = self.plane.get_json("-n", self.namespace, "pods", "-l",
                                   f"plugin-operator.dev/plugin={plugin}")
        return list(data["items"])  # type: ignore[call-overload]

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 60) -> Any:
        def probe() -> Any:
            assert self.process is None or self.process.poll() is None, \
                f"the operator exited:\n{self.logs()[-4000:]}"
            return predicate()

        return eventually(what, probe, timeout_s=timeout, interval_s=0.2,
                          diagnostics=lambda: f"operator log tail:\n{self.logs()[-3000:]}")

    def kubelet_reports(self, pod: str, *, ready: bool, ip: str = "127.0.0.1",
                        restarts: int = 0, phase: str = "Running",
                        terminated: dict[str, Any] | None = None,
                        last_terminated: dict[str, Any] | None = None) -> None:
        """Write pod status the way the kubelet would."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        container: dict[str, Any] = {
            "name": "plugin", "image": "plugin-operator.dev/plugin-operator:test",
            "imageID": "", "ready": ready, "restartCount": restarts, "started": ready,
            "state": {"terminated": terminated} if terminated else {"running": {"startedAt": now}},
        }
        if last_terminated:
            container["lastState"] = {"terminated": last_terminated}
        status = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
                  "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                  "lastTransitionTime": now}],
                  "containerStatuses": [container]}
        self.kubectl("patch", "pod", pod, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))

    def events(self, name: str) -> list[str]:
        data = self.plane.get_json("-n", self.namespace, "events",
                                   "--field-selector", f"involvedObject.name={name}")
        return [f"{e['reason']}: {e['message']}" for e in data["items"]]  # type: ignore[index]


@pytest.fixture
def operator(crds: ControlPlane, namespace: str, tmp_path: Path,
             signed_testdata_python: SignedSample) -> Iterator[OperatorProcess]:
    handle = OperatorProcess(crds, namespace, tmp_path, signed_testdata_python.public_key)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def archive_configmap(op: OperatorProcess, name: str, archive: Path) -> None:
    op.kubectl("create", "configmap", name, f"--from-file=plugin.zip={archive}")


def plugin_object(name: str, configmap: str, *, replicas: int = 1, version: str = "0.1.0",
                  policy: str = "RequireValid", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name},
            "spec": {"pluginId": TESTDATA_ID, "version": version,
                     "source": {"configMapRef": {"name": configmap, "key": "plugin.zip"}},
                     "signature": {"policy": policy}, "replicas": replicas, **spec}}
