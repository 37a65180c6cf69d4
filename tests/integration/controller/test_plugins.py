"""The operator reconciling Plugins on a real apiserver."""

from __future__ import annotations

import hashlib
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.controller.conftest import (
    OperatorProcess,
    archive_configmap,
    plugin_object,
)
from tests.support.samples import SignedSample, tamper

pytestmark = pytest.mark.integration


def _phase(op: OperatorProcess, name: str) -> str:
    return str(op.status("plugin", name).get("phase", ""))


def test_verified_plugin_gets_pods_service_and_status(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "testdata-archive", signed_testdata_python.archive)
    operator.apply(plugin_object("testdata", "testdata-archive", replicas=2,
                                 resources={"limits": {"memory": "128Mi"}},
                                 config={"crash_after_queries": "0"}))
    operator.wait_for("two backend pods", lambda: len(operator.pods("testdata")) == 2)
    status = operator.wait_for("status Starting",
                               lambda: _phase(operator, "testdata") == "Starting"
                               and operator.status("plugin", "testdata"))
    digest = hashlib.sha256(signed_testdata_python.archive.read_bytes()).hexdigest()
    assert status["signature"]["status"] == "valid"
    assert status["signature"]["type"] == "private"
    assert status["artifact"]["sha256"] == digest
    assert status["plugin"] == {"type": "datasource", "name": "Plugin Operator TestData (Python)",
                                "backend": True, "executable": "gpx_testdata_python_linux_amd64",
                                "streaming": True, "alerting": True, "version": "0.1.0"}
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    # The sample asks for Grafana >=10.0.0; plugins run as the configured 12.3.0.
    assert conditions == {"SignatureValid": "True", "Registered": "True",
                          "GrafanaCompatible": "True", "BackendReady": "False"}

    pod = operator.pods("testdata")[0]
    plugin_uid = operator.get("plugin", "testdata")["metadata"]["uid"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == plugin_uid
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    (backend,) = spec["containers"]
    assert backend["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert backend["readinessProbe"]["grpc"] == {"port": 10000, "service": "plugin"}
    assert backend["resources"]["limits"] == {"memory": "128Mi"}
    assert backend["args"][-2:] == ["--setting", "crash_after_queries=0"]
    (fetch,) = spec["initContainers"]
    assert fetch["args"][:2] == ["fetch", f"http://127.0.0.1:{operator.artifacts_port}"
                                          f"/artifacts/{digest}"]
    service = operator.get("service", "plugin-testdata")
    assert service["spec"]["selector"]["plugin-operator.dev/plugin"] == "testdata"
    # The operator applies its Services only when they change, and watches them: one
    # edited or deleted by someone else is put back.
    operator.kubectl("patch", "service", "plugin-testdata", "--type=merge", "-p",
                     json.dumps({"spec": {"selector": {"plugin-operator.dev/plugin": "x"}}}))
    operator.wait_for("the Service's selector put back", lambda: operator.get(
        "service", "plugin-testdata")["spec"]["selector"]["plugin-operator.dev/plugin"]
        == "testdata")
    operator.kubectl("delete", "service", "peers-testdata")
    operator.wait_for("the peers Service back", lambda: operator.kubectl(
        "get", "service", "peers-testdata", check=False).returncode == 0)

    # The operator's cache serves the verified archive to pods, byte for byte.
    with urllib.request.urlopen(status["artifact"]["url"], timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() == digest


def test_ready_backends_make_it_running_and_crashes_are_recorded(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("crashy", "archive"))
    (pod,) = operator.wait_for("a pod", lambda: operator.pods("crashy"))
    name = pod["metadata"]["name"]
    operator.kubelet_reports(name, ready=True)
    operator.wait_for("Running", lambda: _phase(operator, "crashy") == "Running")

    # The kubelet restarts a crashed container in place: counted, and its last words kept.
    crash = {"exitCode": 3, "reason": "Error", "message": "panic: the plugin fell over\n",
             "finishedAt": "2026-11-20T12:00:00Z", "startedAt": "2026-11-20T11:59:00Z"}
    operator.kubelet_reports(name, ready=True, restarts=1, last_terminated=crash)
    status = operator.wait_for("restart counted",
                               lambda: operator.status("plugin", "crashy").get("restarts") == 1
                               and operator.status("plugin", "crashy"))
    assert status["lastFailure"] == {"pod": name, "exitCode": 3, "reason": "Error",
                                     "message": "panic: the plugin fell over",
                                     "time": "2026-11-20T12:00:00Z"}
    operator.wait_for("a BackendCrashed event",
                      lambda: any("BackendCrashed" in e and "panic" in e
                                  for e in operator.events("crashy")))

    # A pod that failed for good (evicted) is replaced under its replica's second name.
    operator.kubelet_reports(name, ready=False, phase="Failed", restarts=1,
                             terminated={"exitCode": 137, "reason": "Evicted",
                                         "finishedAt": "2026-11-20T12:05:00Z"})
    old_uid = pod["metadata"]["uid"]
    replacement = operator.wait_for(
        "a replacement pod",
        lambda: [p for p in operator.pods("crashy") if p["metadata"]["uid"] != old_uid
                 and not p["metadata"].get("deletionTimestamp")])
    assert replacement[0]["metadata"]["name"] == f"{name}s"
    status = operator.wait_for("the replacement counted",
                               lambda: operator.status("plugin", "crashy").get("restarts") == 2
                               and operator.status("plugin", "crashy"))
    assert status["lastFailure"]["exitCode"] == 137
    assert any("BackendReplaced" in e for e in operator.events("crashy"))


def _post_report(operator: OperatorProcess, pod: str, report: dict[str, Any]
                 ) -> tuple[int, str]:
    url = f"http://127.0.0.1:{operator.artifacts_port}/reports/pods/{operator.namespace}/{pod}"
    request = urllib.request.Request(url, data=json.dumps(report).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_restarts_a_host_did_in_the_pod_are_counted_once_and_reported(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("selfheal", "archive"))
    (pod,) = operator.wait_for("a pod", lambda: operator.pods("selfheal"))
    name = pod["metadata"]["name"]
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--report-url") + 1].endswith(
        f"/reports/pods/{operator.namespace}/{name}")
    exit_ = {"exitCode": 2, "reason": "Error", "time": "2026-11-20T12:00:00Z",
             "message": "plugin x (pid 9) exited with code 2\npanic: fell over"}
    report = {"boot": "c0ffee" * 4, "restarts": 1, "last": exit_}

    # Only the pod's own address is believed: this one is not 127.0.0.1.
    operator.kubelet_reports(name, ready=True, ip="10.255.0.9")
    assert _post_report(operator, name, report)[0] == 403
    operator.kubelet_reports(name, ready=True)
    operator.wait_for("Running", lambda: _phase(operator, "selfheal") == "Running")
    assert _post_report(operator, name, {**report, "restarts": "one"})[0] == 400

    assert _post_report(operator, name, report)[0] == 200
    status = operator.wait_for("the in-pod restart counted", lambda: (
        s := operator.status("plugin", "selfheal")).get("restarts") == 1 and s)
    assert status["lastFailure"] == {"pod": name, **exit_}
    assert status["phase"] == "Running"  # the container never stopped
    operator.wait_for("a BackendCrashed event", lambda: any(
        "BackendCrashed" in e and "fell over" in e for e in operator.events("selfheal")))
    # The same report again adds nothing; the next restart of that life adds one.
    assert _post_report(operator, name, report)[1] == "nothing new\n"
    assert _post_report(operator, name, {**report, "restarts": 2})[0] == 200
    operator.wait_for("the second in-pod restart counted", lambda: operator.status(
        "plugin", "selfheal").get("restarts") == 2)


def test_tampered_archive_is_rejected_and_nothing_runs(
        operator: OperatorProcess, signed_testdata_python: SignedSample, tmp_path: Path) -> None:
    archive_configmap(operator, "tampered",
                      tamper(signed_testdata_python.archive, tmp_path / "tampered.zip"))
    operator.apply(plugin_object("tampered", "tampered"))
    status = operator.wait_for("Rejected", lambda: _phase(operator, "tampered") == "Rejected"
                               and operator.status("plugin", "tampered"))
    assert status["message"].startswith("[signatureModified]")
    assert status["signature"]["status"] == "modified"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["SignatureValid"]["status"] == "False"
    assert conditions["SignatureValid"]["reason"] == "signatureModified"
    operator.wait_for("a Rejected event",
                      lambda: any(e.startswith("Rejected: [signatureModified]")
                                  for e in operator.events("tampered")))
    assert operator.pods("tampered") == []


def test_a_new_archive_in_the_configmap_is_verified_at_once(
        operator: OperatorProcess, signed_testdata_python: SignedSample, tmp_path: Path) -> None:
    # A rejected Plugin waits for a change, not a timer: the ConfigMap's own change brings it.
    archive_configmap(operator, "replaced",
                      tamper(signed_testdata_python.archive, tmp_path / "tampered.zip"))
    operator.apply(plugin_object("replaced", "replaced"))
    operator.wait_for("Rejected", lambda: _phase(operator, "replaced") == "Rejected")
    fixed = operator.kubectl("create", "configmap", "replaced", "--dry-run=client", "-o", "json",
                             f"--from-file=plugin.zip={signed_testdata_python.archive}").stdout
    operator.kubectl("replace", "-f", "-", stdin=fixed)
    status = operator.wait_for("the signed archive verified",
                               lambda: _phase(operator, "replaced") in ("Starting", "Running")
                               and operator.status("plugin", "replaced"))
    assert status["signature"]["status"] == "valid"
    assert status["artifact"]["sha256"] == hashlib.sha256(
        signed_testdata_python.archive.read_bytes()).hexdigest()


@pytest.mark.parametrize(("policy", "phase", "expected"), [
    ("RequireValid", "Rejected", "[signatureMissing]"),
    ("AllowUnsigned", "Starting", "starting"),
])
def test_unsigned_plugin_runs_only_when_the_plugin_and_the_operator_allow_it(
        operator: OperatorProcess, tmp_path: Path, policy: str, phase: str,
        expected: str) -> None:
    from tests.support.samples import package_testdata_python

    archive_configmap(operator, "unsigned", package_testdata_python(tmp_path))
    operator.apply(plugin_object("unsigned", "unsigned", policy=policy))
    status = operator.wait_for(phase, lambda: _phase(operator, "unsigned") == phase
                               and operator.status("plugin", "unsigned"))
    assert status["message"].startswith(expected)
    assert status.get("signature", {}).get("status") == "unsigned"


def test_wrong_version_is_rejected_with_a_clear_message(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("wrongversion", "archive", version="9.9.9"))
    status = operator.wait_for("Rejected", lambda: _phase(operator, "wrongversion") == "Rejected"
                               and operator.status("plugin", "wrongversion"))
    assert "spec.version is '9.9.9'" in status["message"]
    assert "[versionMismatch]" in status["message"]


def test_missing_configmap_is_pending_then_recovers(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    operator.apply(plugin_object("late", "late-archive"))
    status = operator.wait_for("Pending", lambda: _phase(operator, "late") == "Pending"
                               and operator.status("plugin", "late"))
    assert f"ConfigMap {operator.namespace}/late-archive key plugin.zip does not exist" in \
        status["message"]
    archive_configmap(operator, "late-archive", signed_testdata_python.archive)
    operator.wait_for("a pod once the archive exists", lambda: operator.pods("late"),
                      timeout=30)


def test_spec_change_rolls_pods_one_at_a_time(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("rolling", "archive", replicas=2))
    old = operator.wait_for("two pods", lambda: len(operator.pods("rolling")) == 2
                            and operator.pods("rolling"))
    for pod in old:
        operator.kubelet_reports(pod["metadata"]["name"], ready=True)
    operator.wait_for("Running", lambda: _phase(operator, "rolling") == "Running")
    old_names = {p["metadata"]["name"] for p in old}

    operator.apply(plugin_object("rolling", "archive", replicas=2, config={"mode": "new"}))

    def new_pods() -> list[str]:
        return sorted(p["metadata"]["name"] for p in operator.pods("rolling")
                      if p["metadata"]["name"] not in old_names)

    first = operator.wait_for("one new pod", new_pods)
    assert len(first) == 1, "a rollout starts one new pod at a time"
    alive_old = [p for p in operator.pods("rolling") if p["metadata"]["name"] in old_names
                 and not p["metadata"].get("deletionTimestamp")]
    assert len(alive_old) == 2, "no old pod goes before a new one is ready"
    operator.kubelet_reports(first[0], ready=True)
    second = operator.wait_for("the second new pod", lambda: len(new_pods()) == 2 and new_pods())
    operator.kubelet_reports(second[1] if second[0] == first[0] else second[0], ready=True)
    operator.wait_for("only new pods left", lambda: {
        p["metadata"]["name"] for p in operator.pods("rolling")
        if not p["metadata"].get("deletionTimestamp")} == set(second), timeout=60)


def test_operator_killed_mid_reconcile_creates_no_duplicates(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("restarted", "archive", replicas=3))
    operator.wait_for("the first pod", lambda: operator.pods("restarted"))
    operator.stop(signal.SIGKILL)  # in the middle of creating the three pods
    operator.start()
    operator.wait_for("three pods", lambda: len(operator.pods("restarted")) == 3)
    settled = {p["metadata"]["name"]: p["metadata"]["uid"] for p in operator.pods("restarted")}
    # One pod per ordinal, none made twice: the names are deterministic.
    assert sorted(int(name.rsplit("-", 1)[1]) for name in settled) == [0, 1, 2]
    operator.stop()
    operator.start()  # and a clean restart on a settled world changes nothing
    operator.wait_for("status written again",
                      lambda: operator.status("plugin", "restarted").get("replicas") == 3)
    assert {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in operator.pods("restarted")} == settled


def test_deleting_the_plugin_leaves_its_objects_to_the_garbage_collector(
        operator: OperatorProcess, signed_testdata_python: SignedSample) -> None:
    """This control plane runs no garbage collector: what is checked is that deletion
    waits for no finalizer and that every object made for the Plugin names it as owner."""
    archive_configmap(operator, "archive", signed_testdata_python.archive)
    operator.apply(plugin_object("doomed", "archive", replicas=2))
    operator.wait_for("pods", lambda: len(operator.pods("doomed")) == 2)
    pod = operator.pods("doomed")[0]
    # No finalizer on Pod-mode Plugins: owner references let Kubernetes' garbage collector
    # remove pods and Service, so deletion never waits for the operator.
    assert operator.get("plugin", "doomed")["metadata"].get("finalizers") in (None, [])
    uid = operator.get("plugin", "doomed")["metadata"]["uid"]
    for owned in (pod, operator.get("service", "plugin-doomed"),
                  operator.get("service", "peers-doomed")):
        (owner,) = owned["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Plugin", uid, True)
    operator.kubectl("delete", "plugin", "doomed", "--wait=true", "--timeout=30s")


def test_a_plugin_made_for_another_grafana_says_so(
        operator: OperatorProcess, tmp_path: Path) -> None:
    """Plugins were told GF_VERSION 12.0.0, whatever Grafana they served, and one requiring
    a newer Grafana ran without a word. Now they get the configured version, and a Plugin
    whose grafanaDependency excludes it carries a False GrafanaCompatible condition and a
    Warning event saying what to do."""
    import zipfile

    from tests.support.samples import package_testdata_python

    source = package_testdata_python(tmp_path)
    needy = tmp_path / "needs-grafana-99.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(needy, "w") as copy:
        for entry in original.infolist():
            data = original.read(entry)
            if entry.filename.split("/")[-1] == "plugin.json" and entry.filename.count("/") <= 1:
                manifest = json.loads(data)
                manifest.setdefault("dependencies", {})["grafanaDependency"] = ">=99.0.0"
                data = json.dumps(manifest).encode()
            copy.writestr(entry, data)
    archive_configmap(operator, "needy", needy)
    operator.apply(plugin_object("needy", "needy", policy="AllowUnsigned"))

    def compatibility() -> Any:
        conditions = operator.status("plugin", "needy").get("conditions") or []
        return next((c for c in conditions if c["type"] == "GrafanaCompatible"), None)

    found = operator.wait_for("the GrafanaCompatible condition", compatibility)
    assert (found["status"], found["reason"]) == ("False", "GrafanaVersionUnsupported")
    assert "'>=99.0.0'" in found["message"]
    assert "operator.grafanaVersion" in found["message"]
    operator.wait_for("a GrafanaVersionUnsupported event", lambda: any(
        e.startswith("GrafanaVersionUnsupported:") for e in operator.events("needy")))
    (pod,) = operator.wait_for("its pod", lambda: operator.pods("needy"))
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--grafana-version") + 1] == "12.3.0"
