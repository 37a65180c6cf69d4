"""Backend pod, Service and sidecar manifests."""

from __future__ import annotations

import json

from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.podspec import (
    Artifact,
    PluginRef,
    Sidecar,
    assign_slots,
    backend_peers_service,
    backend_pod,
    backend_service,
    sidecar_apply_patch,
    spec_hash,
)
from plugin_operator.models import naming
from plugin_operator.models.resources import parse_plugin_spec

CONFIG = OperatorConfig(image="plugin-operator.dev/plugin-operator:1.0.0",
                        artifacts_url="http://operator.system.svc:8081")
ARTIFACT = Artifact("a" * 64, 1000)
REF = PluginRef("plugins", "clickhouse", "uid-1")
SPEC = parse_plugin_spec({"pluginId": "grafana-clickhouse-datasource", "version": "4.0.0",
                          "source": {"url": "https://example.com/c.zip"},
                          "config": {"log_level": "debug"}, "env": [{"name": "A", "value": "1"}]})


def test_pod_is_restricted_and_owned() -> None:
    pod = backend_pod(REF, SPEC, ARTIFACT, CONFIG, 0)
    assert pod["metadata"]["name"] == f"clickhouse-{spec_hash(SPEC, ARTIFACT, CONFIG)[:10]}-0"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["metadata"]["labels"][naming.LABEL_PLUGIN] == "clickhouse"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec["initContainers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
    fetch = spec["initContainers"][0]
    assert fetch["args"] == ["fetch", f"http://operator.system.svc:8081/artifacts/{'a' * 64}",
                             "--sha256", "a" * 64, "--dest",
                             "/var/lib/plugin-operator/plugin/current"]
    backend = spec["containers"][0]
    assert backend["args"][-2:] == ["--setting", "log_level=debug"]
    assert backend["env"][:-1] == [{"name": "A", "value": "1"}]  # then POD_IP, see below
    assert backend["terminationMessagePath"] == "/dev/termination-log"


def test_pods_fetch_from_the_operator_then_the_gateways_copies() -> None:
    mirrored = OperatorConfig(image=CONFIG.image, artifacts_url=CONFIG.artifacts_url,
                              artifacts_mirrors=("http://gateway.system.svc:8001/",))
    fetch = backend_pod(REF, SPEC, ARTIFACT, mirrored, 0)["spec"]["initContainers"][0]
    assert fetch["args"][:5] == ["fetch", f"http://operator.system.svc:8081/artifacts/{'a' * 64}",
                                 f"http://gateway.system.svc:8001/artifacts/{'a' * 64}",
                                 "--sha256", "a" * 64]
    # Sidecars fetch the same way.
    patch = sidecar_apply_patch("Deployment", "plugins", "gw",
                                [Sidecar("clickhouse", SPEC, ARTIFACT, 0)], mirrored)
    (init,) = patch["spec"]["template"]["spec"]["initContainers"]
    assert f"http://gateway.system.svc:8001/artifacts/{'a' * 64}" in init["args"]
    # Pods made before mirrors existed keep their hash; a changed mirror list rolls them.
    assert spec_hash(SPEC, ARTIFACT, CONFIG) == spec_hash(
        SPEC, ARTIFACT, OperatorConfig(image=CONFIG.image, artifacts_url=CONFIG.artifacts_url))
    assert spec_hash(SPEC, ARTIFACT, CONFIG) != spec_hash(SPEC, ARTIFACT, mirrored)


def test_spec_hash_changes_with_what_the_pod_runs() -> None:
    base = spec_hash(SPEC, ARTIFACT, CONFIG)
    assert base == spec_hash(SPEC, ARTIFACT, CONFIG)
    assert base != spec_hash(SPEC, Artifact("b" * 64, 1000), CONFIG)
    other = parse_plugin_spec({"pluginId": "grafana-clickhouse-datasource",
                                  "version": "4.0.0",
                                  "source": {"url": "https://example.com/c.zip"}})
    assert base != spec_hash(other, ARTIFACT, CONFIG)


def test_long_plugin_names_still_make_valid_pod_names() -> None:
    long_ref = PluginRef("plugins", "x" * 200, "uid")
    name = backend_pod(long_ref, SPEC, ARTIFACT, CONFIG, 12)["metadata"]["name"]
    assert len(name) <= 63
    assert name.endswith("-12")


def test_sidecar_slots_are_stable() -> None:
    assert assign_slots(["b", "a"], {}) == {"a": 0, "b": 1}
    # "a" leaves; "b" keeps its port and "c" takes the free one.
    assert assign_slots(["b", "c"], {"a": 10001, "b": 10002}) == {"b": 1, "c": 0}


def test_sidecar_patch_owns_exactly_our_containers() -> None:
    patch = sidecar_apply_patch("Deployment", "gw", "gateway",
                                [Sidecar("clickhouse", SPEC, ARTIFACT, 2)], CONFIG)
    template = patch["spec"]["template"]
    assert json.loads(template["metadata"]["annotations"][naming.ANNOTATION_SIDECARS]) == {
        "clickhouse": 10003}
    (container,) = template["spec"]["containers"]
    assert container["name"] == "plugin-clickhouse"
    assert container["ports"][0]["containerPort"] == 10003
    assert container["readinessProbe"]["grpc"]["port"] == 10003
    assert [v["name"] for v in template["spec"]["volumes"]] == ["plugin-clickhouse",
                                                                "plugin-operator-tmp"]
    empty = sidecar_apply_patch("Deployment", "gw", "gateway", [], CONFIG)
    assert empty["spec"]["template"]["spec"] == {"initContainers": [], "containers": [],
                                                 "volumes": []}


def test_backends_serve_the_attach_port_balanced_over_their_peers() -> None:
    (backend,) = backend_pod(REF, SPEC, ARTIFACT, CONFIG, 0)["spec"]["containers"]
    args = backend["args"]
    assert args[args.index("--attach-port") + 1] == "11000"
    assert args[args.index("--peers") + 1] == "peers-clickhouse.plugins.svc:10000"
    assert {p["name"]: p["containerPort"] for p in backend["ports"]} == {
        "grpc": 10000, "grpc-attach": 11000, "http-metrics": 9100}
    # The host knows itself among the peers by the pod's IP, from the downward API.
    assert backend["env"][-1] == {"name": "POD_IP", "valueFrom": {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}
    # Readiness stays on the local port, whose health says NOT_SERVING while draining.
    assert backend["readinessProbe"]["grpc"] == {"port": 10000, "service": "plugin"}


def test_the_service_has_the_attach_port_and_a_headless_twin_lists_peers() -> None:
    service = backend_service(REF, SPEC)
    assert [(p["name"], p["port"], p["targetPort"], p.get("appProtocol"))
            for p in service["spec"]["ports"]] == [
        ("grpc", 10000, "grpc", "grpc"), ("grpc-attach", 11000, "grpc-attach", "grpc"),
        ("http-metrics", 9100, "http-metrics", None)]
    peers = backend_peers_service(REF, SPEC)
    assert peers["metadata"]["name"] == naming.peers_service_name("clickhouse") == \
        "peers-clickhouse"
    assert peers["metadata"]["namespace"] == "plugins"
    assert peers["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is False
    assert peers["spec"]["selector"] == service["spec"]["selector"]
    assert peers["spec"]["ports"] == [{"name": "grpc", "port": 10000, "targetPort": "grpc",
                                       "protocol": "TCP", "appProtocol": "grpc"}]
    long_name = naming.peers_service_name("x" * 200)
    assert len(long_name) <= 63
    assert long_name.startswith("peers-")
    assert long_name != naming.peers_service_name("x" * 199)
    # A Plugin named like another's peers Service gets a Service of its own.
    assert naming.service_name("clickhouse-peers") != naming.peers_service_name("clickhouse")


def test_sidecars_serve_only_their_local_port() -> None:
    patch = sidecar_apply_patch("Deployment", "gw", "gateway",
                                [Sidecar("clickhouse", SPEC, ARTIFACT, 0)], CONFIG)
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert "--attach-port" not in container["args"]
    assert "--peers" not in container["args"]
    assert [p["containerPort"] for p in container["ports"]] == [10001, 9101]
    assert all(e["name"] != "POD_IP" for e in container["env"])
