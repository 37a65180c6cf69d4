"""The data plane survives the control plane: the gateways keep copies of the verified
archives, backends and the operator can fetch them there, the operator's cache is bounded
(and optionally persistent), and Plugins outside the watched namespaces are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from plugin_operator.controller.config import load_config
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import NAMESPACE, Manifest, Rendered

OPERATOR = "plugin-operator"
GATEWAY = "plugin-operator-gateway"
MIRROR_URL = f"http://{GATEWAY}.{NAMESPACE}.svc.cluster.local:8001"
OPERATOR_URL = f"http://{OPERATOR}.{NAMESPACE}.svc.cluster.local:8081"


def _pod(rendered: Rendered, deployment: str) -> Manifest:
    spec: Manifest = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def _config(rendered: Rendered, tmp_path: Path) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(rendered.get("ConfigMap", "plugin-operator-config")["data"]["config.yaml"])
    return load_config(path, environ={})


def test_gateways_mirror_the_archives_on_a_port_and_service_of_their_own(
        render: Render) -> None:
    rendered = render()
    pod = _pod(rendered, GATEWAY)
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--artifact-mirror-port") + 1] == "8001"
    assert args[args.index("--artifact-mirror-max-bytes") + 1] == "1073741824"
    # Copies come from the operator's cache, else from a peer gateway; never from elsewhere.
    sources = [args[i + 1] for i, a in enumerate(args) if a == "--artifact-source"]
    assert sources == [OPERATOR_URL, MIRROR_URL]
    directory = args[args.index("--artifact-mirror-dir") + 1]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"] == {"sizeLimit": "2Gi"}
    service = rendered.get("Service", GATEWAY)
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "artifacts"]
    assert port == {"name": "artifacts", "port": 8001, "targetPort": "artifacts",
                    "protocol": "TCP"}
    assert rendered.get("Deployment", GATEWAY)["spec"]["replicas"] == 2


def test_operator_and_backends_know_the_mirror(render: Render, tmp_path: Path) -> None:
    config = _config(render(), tmp_path)
    assert config.artifacts_mirrors == (MIRROR_URL,)
    assert config.artifacts_max_bytes == 1073741824
    off = _config(render({"gateway": {"artifactMirror": {"enabled": False}}}), tmp_path)
    assert off.artifacts_mirrors == ()
    gateway = _pod(render({"gateway": {"artifactMirror": {"enabled": False}}}), GATEWAY)
    assert "--artifact-mirror-port" not in gateway["containers"][0]["args"]


def test_operator_cache_is_an_empty_dir_unless_persistence_is_enabled(render: Render) -> None:
    (cache,) = [v for v in _pod(render(), OPERATOR)["volumes"] if v["name"] == "artifact-cache"]
    assert cache == {"name": "artifact-cache", "emptyDir": {"sizeLimit": "2Gi"}}
    assert render().all("PersistentVolumeClaim") == []
    rendered = render({"operator": {"artifactCache": {"persistence": {
        "enabled": True, "storageClass": "fast", "size": "5Gi"}}}})
    (cache,) = [v for v in _pod(rendered, OPERATOR)["volumes"] if v["name"] == "artifact-cache"]
    claim = rendered.get("PersistentVolumeClaim", cache["persistentVolumeClaim"]["claimName"],
                         NAMESPACE)
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # One pod at a time on a ReadWriteOnce claim.
    assert rendered.get("Deployment", OPERATOR)["spec"]["strategy"]["type"] == "Recreate"
    default_class = render({"operator": {"artifactCache": {"persistence": {"enabled": True}}}})
    (claim,) = default_class.all("PersistentVolumeClaim")
    assert "storageClassName" not in claim["spec"]


def _admission(rendered: Rendered) -> tuple[Manifest, Manifest]:
    (policy,) = rendered.all("ValidatingAdmissionPolicy")
    (binding,) = rendered.all("ValidatingAdmissionPolicyBinding")
    return policy, binding


def test_plugins_outside_the_watched_namespaces_are_refused_at_admission(
        render: Render) -> None:
    policy, binding = _admission(render({"plugins": {"namespaces": ["team-a", "team-b"]}}))
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["plugin-operator.dev"]
    assert set(rule["resources"]) == {"plugins", "datasourceinstances"}
    assert rule["operations"] == ["CREATE"]
    (validation,) = policy["spec"]["validations"]
    # Served namespaces carry a label, so releases serving other namespaces do not clash.
    assert "plugin-operator.dev/plugins" in validation["expression"]
    assert "namespaceObject" in validation["expression"]
    # The message names the watched namespaces and what to do.
    assert "team-a, team-b" in validation["message"]
    assert "plugins.namespaces" in validation["message"]
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_no_admission_policy_when_watching_the_whole_cluster_or_turned_off(
        render: Render) -> None:
    assert render({"plugins": {"namespaces": []}}).all("ValidatingAdmissionPolicy") == []
    off = render({"plugins": {"refuseOutsideNamespaces": False}})
    assert off.all("ValidatingAdmissionPolicy") == []
    assert off.all("ValidatingAdmissionPolicyBinding") == []


def test_admission_policy_names_differ_per_release_namespace(render: Render) -> None:
    here, _ = _admission(render())
    there, _ = _admission(render(namespace="elsewhere"))
    assert here["metadata"]["name"] != there["metadata"]["name"]
    assert yaml.safe_dump(here)  # plain data


def test_the_namespaces_the_chart_creates_are_labelled_as_served(render: Render) -> None:
    created = render({"plugins": {"namespaces": ["team-a"], "createNamespaces": True}})
    (namespace,) = [n for n in created.all("Namespace") if n["metadata"]["name"] == "team-a"]
    assert namespace["metadata"]["labels"]["plugin-operator.dev/plugins"] == "true"


def _workload_patch_rules(rendered: Rendered) -> list[Manifest]:
    roles = [r for r in rendered.all("Role") + rendered.all("ClusterRole")
             if "operator" in r["metadata"]["name"]]
    return [rule for role in roles for rule in role.get("rules") or []
            if "deployments" in rule.get("resources", []) and "patch" in rule["verbs"]]


def test_the_operator_patches_only_the_named_workloads(render: Render) -> None:
    named = _workload_patch_rules(render({"operator": {"workloadNames": ["grafana"]}}))
    assert named
    for rule in named:
        assert rule["verbs"] == ["patch"]
        assert rule["resourceNames"] == ["grafana"]
    # By default any workload of the plugin namespaces, as sidecar mode always allowed.
    assert all("resourceNames" not in rule for rule in _workload_patch_rules(render()))


def test_one_grafana_version_for_the_operator_and_the_gateway(
        render: Render, tmp_path: Path) -> None:
    rendered = render({"operator": {"grafanaVersion": "11.6.3"}})
    assert _config(rendered, tmp_path).grafana_version == "11.6.3"
    (gateway,) = _pod(rendered, GATEWAY)["containers"]
    args = gateway["args"]
    assert args[args.index("--grafana-version") + 1] == "11.6.3"
