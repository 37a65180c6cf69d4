"""Issue 12, items 2, 3 and 8 and the chaos run, on the cluster: what a plugin, a query or a
restart can do to the system.

A query that kills its backend costs one replica, not each in turn; every backend resolves
names; the data plane keeps serving while the operator restarts with the plugin's source
gone; and under steady load, deleted backend pods and a deleted operator cost no query.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from typing import Any

import yaml

from tests.e2e.conftest import REPO_ROOT
from tests.e2e.gateway.conftest import CLIENT_POD, _datasource
from tests.e2e.hardening.attacks import FLOOD, STEADY
from tests.e2e.hardening.conftest import (
    DEADLY_UID,
    GOOD_UID,
    PLUGIN,
    Hardening,
    plugin_running,
    query_body,
)
from tests.e2e.operator.conftest import ARCHIVE_SERVER, TESTDATA_ID


def steady(hardening: Hardening, rate: int, seconds: int, **spec: Any) -> Any:
    """Start an open-loop load of good queries (or ``spec``'s requests) from the client pod."""
    client = hardening.client
    load = {"url": client.base_url + "/api/ds/query", "method": "POST",
            "token": client.allowed_token, "body": query_body(GOOD_UID), "rate": rate,
            "seconds": seconds, **spec}
    return hardening.start(STEADY, load, timeout_s=seconds + 120)


def assert_all_answered(report: dict[str, Any], hardening: Hardening) -> None:
    assert report["statuses"] == {"200": report["sent"]}, \
        f"{report}\n{hardening.client.gateway_logs()}\n{hardening.plugins.diagnostics()}"


def test_a_query_of_death_costs_one_replica(hardening: Hardening) -> None:
    """Item 2: one query killed every replica in turn (the gateway replayed it), and 425 of
    1,200 unrelated queries failed. Now the call that was being served when its backend died
    is answered 502 and quarantined; unrelated queries keep being answered."""
    client = hardening.client
    token = client.allowed_token
    before = hardening.backend_restarts()
    load = steady(hardening, rate=10, seconds=30)
    first = client.call("POST", "/api/ds/query", token=token, body=query_body(DEADLY_UID))
    assert first["status"] == 502, first
    assert "not retried" in json.loads(first["body"])["message"], first
    for _ in range(3):
        again = client.call("POST", "/api/ds/query", token=token,
                            body=query_body(DEADLY_UID))
        assert again["status"] == 503, again
        assert json.loads(again["body"])["messageId"] == "query.quarantined", again
    # 10,000 queries in one request never reach a plugin.
    many = {"from": "now-1h", "to": "now", "queries": [
        {"refId": f"Q{i}", "datasource": {"uid": GOOD_UID}} for i in range(10_000)]}
    refused = hardening.finish(hardening.start(FLOOD, {"base": client.base_url, "groups": [
        {"name": "many", "method": "POST", "path": "/api/ds/query", "token": token,
         "body": json.dumps(many), "count": 1}]}))
    assert refused["many"]["statuses"] == {"400": 1}, refused
    report = hardening.finish(load)
    # At 10 queries a second of a few milliseconds each, the deadly query is the only one
    # its replica was likely serving when it died; one good query may have been too.
    assert report["statuses"].get("200", 0) >= report["sent"] - 1, report
    restarted = hardening.backend_restarts() - before
    assert restarted == 1, f"{restarted} backend restarts\n{hardening.plugins.diagnostics()}"
    hardening.plugins.wait_for("both replicas ready again",
                               functools.partial(plugin_running, hardening.plugins, 2))


RESOLVE = """
import socket, sys
for name in sys.argv[1:]:
    socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)
    print(name)
"""


def test_every_backend_resolves_names(hardening: Hardening) -> None:
    """Item 3: the chart allowed DNS on port 53 only; the local cluster's DNS listens on
    1053, so backends resolved nothing once their NetworkPolicy applied."""
    release = hardening.client.release
    names = ["kubernetes.default.svc.cluster.local",
             f"{release.gateway_deployment}.{release.namespace}.svc.cluster.local"]
    pods = hardening.plugins.pods(PLUGIN)
    assert len(pods) == 2
    for pod in pods:
        resolved = hardening.cluster.python(hardening.plugins.namespace,
                                            pod["metadata"]["name"], RESOLVE, *names)
        assert resolved.stdout.split() == names, resolved


def test_the_data_plane_survives_an_operator_restart_with_the_source_gone(
        hardening: Hardening) -> None:
    """Item 8: after an operator restart, frontend files answered 502 for ~30 s and a new
    backend pod waited in Init for 60 s; with the plugin's URL down, nothing could start.
    Now the gateway serves its own copy of the files, and new backend pods start from the
    gateways' copies of the verified archive, which the restarted operator refills its
    cache from."""
    plugins = hardening.plugins
    release = hardening.client.release
    # The plugin's only source goes away for good.
    plugins.kubectl("delete", "pod", ARCHIVE_SERVER, "--wait=true", "--timeout=60s")
    files = steady(hardening, rate=20, seconds=40, method="GET", body=None, token=None,
                   url=f"{hardening.client.base_url}/public/plugins/{TESTDATA_ID}/plugin.json")
    time.sleep(2)  # files are being fetched before the operator goes
    old_operator = release.operator_pod()
    plugins.cluster.kubectl("-n", release.namespace, "delete", "pod", old_operator,
                            "--wait=false")
    # Meanwhile: one more replica wanted, and one running replica deleted.
    plugins.kubectl("patch", "plugin", PLUGIN, "--type=merge", "-p",
                    json.dumps({"spec": {"replicas": 3}}))
    victim = plugins.pods(PLUGIN)[0]["metadata"]
    plugins.kubectl("delete", "pod", victim["name"], "--wait=false")
    plugins.wait_for("a new operator pod", lambda: release.operator_pod() != old_operator,
                     timeout_s=120)
    plugins.wait_for("three ready replicas, started without the plugin's source",
                     functools.partial(plugin_running, plugins, 3), timeout_s=240)
    # The replacement started under the replica's other name while the victim went away.
    assert victim["uid"] not in {p["metadata"]["uid"] for p in plugins.pods(PLUGIN)}
    assert_all_answered(hardening.finish(files), hardening)
    good = hardening.client.call("POST", "/api/ds/query", token=hardening.client.allowed_token,
                                 body=query_body(GOOD_UID))
    assert good["status"] == 200, good
    plugins.kubectl("patch", "plugin", PLUGIN, "--type=merge", "-p",
                    json.dumps({"spec": {"replicas": 2}}))
    plugins.wait_for("back to two replicas", lambda: plugin_running(plugins, 2) and
                     len(plugins.pods(PLUGIN)) == 2)


def test_steady_load_survives_deleted_backends_and_a_deleted_operator(
        hardening: Hardening) -> None:
    """150 queries a second for 60 s; a backend pod deleted every 15 s and the operator
    deleted twice: no query fails."""
    plugins = hardening.plugins
    release = hardening.client.release
    seconds = 60
    load = steady(hardening, rate=150, seconds=seconds)
    start = time.monotonic()
    deleted_backends, deleted_operators = [], []
    # (seconds into the run, what to delete)
    plan = [(5, "backend"), (12, "operator"), (20, "backend"), (35, "backend"),
            (42, "operator"), (50, "backend")]
    for at, what in plan:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if what == "operator":
            pod = release.operator_pod()
            plugins.cluster.kubectl("-n", release.namespace, "delete", "pod", pod,
                                    "--wait=false")
            deleted_operators.append(pod)
        else:
            ready = [p for p in plugins.pods(PLUGIN)
                     if any(c.get("ready") for c in p["status"].get("containerStatuses") or [])]
            pod = ready[0]["metadata"]["name"]
            plugins.kubectl("delete", "pod", pod, "--wait=false")
            deleted_backends.append(pod)
    report = hardening.finish(load)
    assert (len(deleted_backends), len(deleted_operators)) == (4, 2)
    assert_all_answered(report, hardening)
    plugins.wait_for("two ready replicas after the chaos",
                     functools.partial(plugin_running, plugins, 2), timeout_s=180)


def _healthy_condition(plugins: Any, name: str) -> dict[str, Any]:
    conditions = plugins.status("datasourceinstance", name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Healthy"), {})


LISTEN = """
import socket
server = socket.create_server(("", 8080))
while True:
    server.accept()[0].close()
"""


def test_a_health_check_that_cannot_reach_its_server_says_why(hardening: Hardening) -> None:
    """Item 3's other half: a datasource whose backend cannot resolve or reach its server
    reports it with a reason and what to check, and the documented per-Plugin egress
    policy (examples/datasource-egress.yaml) opens the way."""
    plugins = hardening.plugins
    namespace = plugins.namespace
    target_ip = plugins.get("pod", CLIENT_POD)["status"]["podIP"]
    listener = subprocess.Popen(  # a server in the client pod, which backends may not reach
        [str(hardening.cluster.kubectl_path), "--kubeconfig",
         str(hardening.cluster.kubeconfig), "-n", namespace, "exec", CLIENT_POD, "--",
         "timeout", "300", "python3", "-c", LISTEN],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = {"no-such-name": f"https://nothing-here.{namespace}.svc.cluster.local",
             "blocked": f"http://{target_ip}:8080"}
    try:
        for name, endpoint in cases.items():
            source = _datasource(name, f"hd-{name}", PLUGIN,
                                 {"endpoint": endpoint, "checkConnection": True})
            source["spec"]["healthCheck"] = {"interval": "5s"}
            plugins.apply(source)

        def healthy(name: str, status: str, *reasons: str) -> Any:
            found = _healthy_condition(plugins, name)
            return found if found.get("status") == status and found.get("reason") in reasons \
                else None

        unresolved = plugins.wait_for("NameResolutionFailed", lambda: healthy(
            "no-such-name", "False", "NameResolutionFailed"), timeout_s=120)
        assert "networkPolicy.dns.ports" in unresolved["message"], unresolved
        # The chart's policy refuses the backend's egress to the listening server: the
        # policy's implementation answers with a reset (refused) or drops (timeout).
        blocked = plugins.wait_for("the egress policy's refusal reported", lambda: healthy(
            "blocked", "False", "ConnectionRefused", "ConnectionTimedOut"), timeout_s=120)
        assert "datasource-egress.yaml" in blocked["message"], blocked
        assert any(e.startswith(f"{blocked['reason']}:") for e in plugins.events("blocked"))
        # The example's policy, for this Plugin and the server's address and port.
        policy = yaml.safe_load((REPO_ROOT / "examples" / "datasource-egress.yaml")
                                .read_text())
        policy["metadata"] = {"name": "py-egress"}
        policy["spec"]["podSelector"]["matchLabels"]["plugin-operator.dev/plugin"] = PLUGIN
        policy["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": f"{target_ip}/32"}}],
                                     "ports": [{"protocol": "TCP", "port": 8080}]}]
        plugins.apply(policy)
        plugins.wait_for("the check passing once egress is open",
                         lambda: healthy("blocked", "True", "CheckPassed"), timeout_s=120)
    finally:
        listener.kill()
        plugins.kubectl("delete", "networkpolicy/py-egress",
                        *(f"datasourceinstance/{name}" for name in cases), check=False)
