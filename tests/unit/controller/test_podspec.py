"""Backend pod, Service and sidecar manifests."""

from __future__ import annotations

import json

from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.podspec import (
    Artifact,
    PluginRef,
    Sidecar,
    assign_slots,
    backend_pod,
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
    assert backend["env"] == [{"name": "A", "value": "1"}]
    assert backend["terminationMessagePath"] == "/dev/termination-log"


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
