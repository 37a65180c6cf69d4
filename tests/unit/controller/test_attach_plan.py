"""What a GrafanaAttachment puts into the Grafana workload, its ConfigMap and NetworkPolicy."""

from __future__ import annotations

import json

import pytest
import yaml

from plugin_operator.controller import attach_plan as plan
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.podspec import Artifact
from plugin_operator.models import naming
from plugin_operator.models.attachment import parse_attachment_spec
from plugin_operator.models.resources import Mode, SpecError, parse_datasource_spec

CONFIG = OperatorConfig(image="plugin-operator.dev/plugin-operator:1.0.0",
                        artifacts_url="http://operator.system.svc:8081")
REF = plan.AttachmentRef("monitoring", "grafana", "uid-7")
SPEC = parse_attachment_spec({"workloadRef": {"kind": "Deployment", "name": "grafana"},
                              "plugins": [{"name": "sample-go"}, {"name": "testdata"}],
                              "datasources": {"provision": True}})
GO = plan.AttachedPlugin("sample-go", "plugin-operator-sample-go", "1.0.0",
                         Artifact("a" * 64, 10), Mode.POD,
                         plan.pod_mode_address("sample-go", "monitoring"))
PY = plan.AttachedPlugin("testdata", "testdata-python", "0.1.0", Artifact("b" * 64, 5),
                         Mode.SIDECAR, plan.sidecar_address(10001))
DATASOURCE = plan.ProvisionedDataSource(parse_datasource_spec({
    "pluginRef": {"name": "sample-go"}, "uid": "go-ds", "url": "http://db:5432",
    "basicAuth": True, "basicAuthUser": "grafana", "jsonData": {"interval": "10s"},
    "secureJsonDataFrom": {"password": {"secretKeyRef": {"name": "db", "key": "pw"}},
                           "basicAuthPassword": {"secretKeyRef": {"name": "db", "key": "ba"}}},
}, "go-datasource"), GO.plugin_id)


def _patch(plugins: list[plan.AttachedPlugin],
           datasources: list[plan.ProvisionedDataSource] | None = None) -> dict[str, object]:
    return plan.workload_apply_patch("Deployment", "monitoring", "grafana", "grafana", SPEC,
                                     plugins, datasources or [], "d1" if datasources else "",
                                     "attach-grafana-datasources" if datasources else None,
                                     CONFIG)


def test_the_address_variable_is_the_sdks() -> None:
    # grafana-plugin-sdk-go: the id upper-cased, '-' replaced with '_'.
    assert plan.address_variable("my-org-clock-panel") == \
        "GF_PLUGIN_GRPC_ADDRESS_MY_ORG_CLOCK_PANEL"
    assert GO.address == f"plugin-sample-go.monitoring.svc:{naming.ATTACH_PORT}"


def test_each_plugin_is_installed_by_digest_and_mounted_into_the_plugins_directory() -> None:
    patch = _patch([GO, PY])
    template = patch["spec"]["template"]  # type: ignore[index]
    inits = template["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["install-plugin-operator-sample-go",
                                          "install-testdata-python"]
    args = inits[0]["args"]
    assert args[:2] == ["fetch", f"http://operator.system.svc:8081/artifacts/{'a' * 64}"]
    assert args[args.index("--sha256") + 1] == "a" * 64
    assert args[args.index("--dest") + 1] == \
        f"{plan.INSTALL_ROOT}/plugin-operator-sample-go"
    (grafana,) = template["spec"]["containers"]
    assert grafana["name"] == "grafana"
    mounts = {m["mountPath"]: m for m in grafana["volumeMounts"]}
    mount = mounts["/var/lib/grafana/plugins/plugin-operator-sample-go"]
    assert mount == {"name": plan.PLUGINS_VOLUME, "readOnly": True,
                     "subPath": "plugin-operator-sample-go",
                     "mountPath": "/var/lib/grafana/plugins/plugin-operator-sample-go"}
    env = {e["name"]: e["value"] for e in grafana["env"]}
    assert env["GF_PLUGIN_GRPC_ADDRESS_PLUGIN_OPERATOR_SAMPLE_GO"] == GO.address
    assert env["GF_PLUGIN_GRPC_ADDRESS_TESTDATA_PYTHON"] == "127.0.0.1:10001"
    assert env["GF_PLUGINS_FORWARD_HOST_ENV_VARS"] == \
        "plugin-operator-sample-go,testdata-python"
    assert json.loads(template["metadata"]["annotations"][plan.ANNOTATION_ATTACHED]) == {
        "plugin-operator-sample-go": "a" * 16, "testdata-python": "b" * 16}


def test_a_new_version_changes_the_template_and_so_rolls_the_workload() -> None:
    upgraded = plan.AttachedPlugin(GO.name, GO.plugin_id, "1.1.0", Artifact("c" * 64, 10),
                                   GO.mode, GO.address)
    before, after = _patch([GO]), _patch([upgraded])
    assert before["spec"]["template"]["metadata"] != \
        after["spec"]["template"]["metadata"]  # type: ignore[index]


def test_nothing_attached_applies_an_empty_body_which_removes_everything_ours() -> None:
    assert _patch([]) == {"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "grafana", "namespace": "monitoring"}}


def test_provisioning_never_copies_a_secret_value() -> None:
    document = plan.provisioning_document([DATASOURCE])
    parsed = yaml.safe_load(document)
    (entry,) = parsed["datasources"]
    assert parsed["apiVersion"] == 1
    assert entry["type"] == "plugin-operator-sample-go"
    assert entry["uid"] == "go-ds"
    assert entry["access"] == "proxy"
    assert entry["basicAuth"] is True
    assert entry["basicAuthUser"] == "grafana"
    assert entry["jsonData"] == {"interval": "10s"}
    assert entry["secureJsonData"] == {
        "password": f"$__file{{{plan.SECRETS_ROOT}/db/pw}}",
        "basicAuthPassword": f"$__file{{{plan.SECRETS_ROOT}/db/ba}}"}


def test_provisioned_datasources_mount_the_file_and_their_secrets() -> None:
    patch = _patch([GO], [DATASOURCE])
    spec = patch["spec"]["template"]["spec"]  # type: ignore[index]
    (grafana,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in grafana["volumeMounts"]}
    assert mounts["/etc/grafana/provisioning/datasources/plugin-operator.yaml"]["subPath"] == \
        plan.DATASOURCES_FILE
    assert mounts[f"{plan.SECRETS_ROOT}/db"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[plan.secret_volume_name("db")] == {
        "name": plan.secret_volume_name("db"), "secret": {"secretName": "db"}}
    assert volumes[plan.DATASOURCES_VOLUME]["configMap"] == {
        "name": "attach-grafana-datasources"}


def test_network_policy_admits_the_workloads_pods_to_the_attach_port_only() -> None:
    policy = plan.network_policy(REF, ["sample-go"], {"app": "grafana"})
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-7"
    assert policy["spec"]["podSelector"]["matchExpressions"] == [
        {"key": naming.LABEL_PLUGIN, "operator": "In", "values": ["sample-go"]}]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "grafana"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": naming.ATTACH_PORT}]


@pytest.mark.parametrize(("workload", "finished"), [
    ({"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                 "availableReplicas": 2}}, True),
    ({"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                 "availableReplicas": 2}}, False),
    ({"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2,
                 "availableReplicas": 2}}, False),
    ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
      "status": {"observedGeneration": 1, "currentRevision": "a", "updateRevision": "b",
                 "readyReplicas": 1, "updatedReplicas": 1}}, False),
    ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
      "status": {"observedGeneration": 1, "currentRevision": "b", "updateRevision": "b",
                 "readyReplicas": 1, "updatedReplicas": 1}}, True),
])
def test_rollout_finished(workload: dict[str, object], finished: bool) -> None:
    assert plan.rollout_finished(workload) is finished


def test_carried_plugins_reads_the_template_annotation() -> None:
    annotation = plan.template_fingerprint([GO], "d1")
    assert plan.carried_plugins({plan.ANNOTATION_ATTACHED: annotation}) == {
        GO.plugin_id: "a" * 16}
    assert plan.carried_plugins({plan.ANNOTATION_ATTACHED: "not json"}) == {}


@pytest.mark.parametrize(("spec", "field"), [
    ({"plugins": []}, "spec.workloadRef"),
    ({"workloadRef": {"kind": "DaemonSet", "name": "g"}, "plugins": []},
     "spec.workloadRef.kind"),
    ({"workloadRef": {"kind": "Deployment", "name": "g"}}, "spec.plugins"),
    ({"workloadRef": {"kind": "Deployment", "name": "g"},
      "plugins": [{"name": "a"}, {"name": "a"}]}, "spec.plugins[1].name"),
    ({"workloadRef": {"kind": "Deployment", "name": "g"}, "plugins": [],
      "pluginsPath": "relative"}, "spec.pluginsPath"),
    ({"workloadRef": {"kind": "Deployment", "name": "g"}, "plugins": [],
      "datasources": {"provisioningPath": "/etc/../x"}}, "spec.datasources.provisioningPath"),
])
def test_bad_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_attachment_spec(spec)
    assert raised.value.field == field


def test_defaults() -> None:
    spec = parse_attachment_spec({"workloadRef": {"kind": "StatefulSet", "name": "g"},
                                  "plugins": [{"name": "a"}]})
    assert spec.plugins_path == "/var/lib/grafana/plugins"
    assert spec.provisioning_path == "/etc/grafana/provisioning"
    assert spec.provision_datasources is False
    assert spec.container is None
