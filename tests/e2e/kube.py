"""kubectl against the e2e cluster, and the pod shapes the e2e tests share."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.wait import eventually

# Pod Security `restricted` asks exactly this of every container.
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_path: Path
    image: str
    logs_hint: str
    # True for this machine's cluster from hack/cluster.sh (not kind or another cluster).
    local: bool = False

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; on failure raise with its stderr and where the cluster's logs are."""
        result = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
                f"\n{self.logs_hint}"
            )
        return result

    def apply(self, namespace: str, *objects: dict[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(items))

    def get(self, namespace: str, *what: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.kubectl("-n", namespace, "get", "-o", "json", *what).stdout
        )
        return data

    def failed_containers(self, namespace: str) -> str:
        """Every container in the namespace that exited with an error, with the message it
        left (its termination log, or its last log lines)."""
        result = self.kubectl("-n", namespace, "get", "pods", "-o", "json", check=False)
        if result.returncode != 0:
            return ""
        lines = []
        for pod in json.loads(result.stdout)["items"]:
            status = pod.get("status", {})
            for container in (status.get("initContainerStatuses", [])
                              + status.get("containerStatuses", [])):
                ended = (container.get("state", {}).get("terminated")
                         or container.get("lastState", {}).get("terminated"))
                if ended and ended.get("exitCode"):
                    message = (ended.get("message") or ended.get("reason") or "").strip()
                    lines.append(f"{pod['metadata']['name']}/{container['name']} exited "
                                 f"{ended['exitCode']} ({container.get('restartCount', 0)} "
                                 f"restarts): {message[-1500:]}")
        return "\n".join(lines)

    def wait_ready(self, namespace: str, pod: str, timeout_s: int = 180) -> dict[str, Any]:
        result = self.kubectl(
            "-n", namespace, "wait", "--for=condition=Ready", f"pod/{pod}",
            f"--timeout={timeout_s}s", check=False, timeout=timeout_s + 30,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"pod {namespace}/{pod} not Ready within {timeout_s}s:\n"
                + self.kubectl("-n", namespace, "describe", "pod", pod, check=False).stdout
                + self.kubectl("-n", namespace, "logs", pod, "--all-containers", check=False).stdout
                + f"\n{self.logs_hint}"
            )
        return self.get(namespace, "pod", pod)

    def exec(self, namespace: str, pod: str, *command: str, check: bool = True,
             container: str | None = None) -> subprocess.CompletedProcess[str]:
        target = ["-c", container] if container else []
        return self.kubectl("-n", namespace, "exec", pod, *target, "--", *command, check=check)

    def python(self, namespace: str, pod: str, script: str, *args: str,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Python script inside a pod running our image."""
        return self.exec(namespace, pod, "python3", "-c", script, *args, check=check)

    def python_eventually(self, namespace: str, pod: str, script: str, *args: str,
                          timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a Python script in a pod until it succeeds: Service rules and DNS records
        reach kube-proxy and CoreDNS a moment after the endpoints become ready."""
        last: list[subprocess.CompletedProcess[str]] = []

        def attempt() -> bool:
            last[:] = [self.python(namespace, pod, script, *args, check=False)]
            return last[0].returncode == 0

        deadline = time.monotonic() + timeout_s
        while not attempt():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"script in {namespace}/{pod} kept failing for {timeout_s}s with "
                    f"args {args}:\n{last[0].stderr}\n{self.logs_hint}"
                )
            time.sleep(1)
        return last[0]

    def wait_for(self, what: str, probe: Any, timeout_s: float = 120) -> Any:
        """Poll ``probe()`` until it returns something truthy; fail naming ``what``."""
        return eventually(what, probe, timeout_s=timeout_s, interval_s=1,
                          diagnostics=lambda: self.logs_hint)


def server_pod(name: str, image: str, command: list[str], port: int) -> dict[str, Any]:
    """A restricted Pod of our image serving on ``port``, Ready once the port accepts."""
    return restricted_pod(name, image, command, container={
        "ports": [{"containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}},
        spec={"terminationGracePeriodSeconds": 1})


def restricted_pod(name: str, image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    """A Pod of our image that meets the `restricted` Pod Security Standard."""
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **extra.pop("container", {}),
    }
    spec: dict[str, Any] = {
        "securityContext": RESTRICTED_POD_SECURITY,
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": extra.pop("automount_token", False),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *extra.pop("volumes", [])],
        **extra.pop("spec", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": extra.pop("labels", {"app": name})},
        "spec": spec,
    }


# Runs in a plugin container: SIGKILL the processes whose command (argv 0 or 1) contains one of
# the arguments: the plugin, not the host that supervises it.
KILL_PLUGIN = """
import os, signal, sys
names = [n.encode() for n in sys.argv[1:]]
for pid in filter(str.isdigit, os.listdir('/proc')):
    if int(pid) == os.getpid():  # this script's own command line names the plugin too
        continue
    try:
        cmdline = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
    except OSError:
        continue
    if any(name in part for part in cmdline[:2] for name in names):
        os.kill(int(pid), signal.SIGKILL)
        print(pid)
"""

SLEEP_FOREVER = ["python3", "-c", "import signal; signal.pause()"]
