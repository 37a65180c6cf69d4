"""The operator and gateway Deployments: shape, probes, security, configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from plugin_operator.controller.config import load_config
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import NAMESPACE, Manifest, Rendered

OPERATOR = "plugin-operator"
GATEWAY = "plugin-operator-gateway"
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n"


def _container(rendered: Rendered, deployment: str) -> Manifest:
    (container,) = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _port(container: Manifest, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_the_operator_is_one_pod_replaced_not_rolled(render: Render) -> None:
    spec = render().get("Deployment", OPERATOR)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_the_gateway_rolls_without_losing_capacity(render: Render) -> None:
    rendered = render()
    deployment = rendered.get("Deployment", GATEWAY)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = _container(rendered, GATEWAY)
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(container["args"][container["args"].index("--drain-seconds") + 1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    pdb = rendered.get("PodDisruptionBudget", GATEWAY)
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_container_runs_restricted(render: Render) -> None:
    rendered = render()
    assert len(list(rendered.containers())) == 2
    for deployment in rendered.all("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for name, container in rendered.containers():
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert container["resources"]["requests"], name
        assert container["resources"]["limits"], name


def test_writable_paths_are_empty_dirs(render: Render) -> None:
    rendered = render()
    for deployment, expected in ((OPERATOR, {"/tmp", "/var/cache/plugin-operator"}),
                                 (GATEWAY, {"/tmp", "/var/cache/plugin-operator-mirror"})):
        pod = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"] for m in _container(rendered, deployment)["volumeMounts"]
                  if m["name"] in empty}
        assert mounts == expected


def test_operator_probes_use_kopfs_liveness_and_the_artifact_port(render: Render) -> None:
    container = _container(render(), OPERATOR)
    assert container["args"] == ["operator", "--config", "/etc/plugin-operator/config.yaml",
                                 "--log-level", "INFO"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["tcpSocket"] == {"port": "artifacts"}
    assert _port(container, "health") == 8082
    assert _port(container, "artifacts") == 8081
    assert _port(container, "metrics") == 8080


def test_gateway_probes_and_arguments(render: Render) -> None:
    container = _container(render(), GATEWAY)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    args = container["args"]
    assert args[:3] == ["gateway", "--port", "8000"]
    assert args[args.index("--namespace") + 1] == "plugins"
    assert "GF_APP_URL=http://localhost:3000/" in args
    assert _port(container, "http") == 8000


def test_gateway_watches_every_namespace_when_serving_more_than_one(render: Render) -> None:
    container = _container(render({"plugins": {"namespaces": ["a", "b"]}}), GATEWAY)
    assert "--namespace" not in container["args"]


def _operator_config(rendered: Rendered, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    text = rendered.get("ConfigMap", "plugin-operator-config")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    # The operator's own loader: unknown keys or bad values would raise here.
    return load_config(path, environ={}), yaml.safe_load(text)


def test_operator_config_is_valid_and_points_at_this_release(render: Render,
                                                              tmp_path: Path) -> None:
    values = {"image": {"tag": "1.2.3", "pullPolicy": "Never"},
              "operator": {"appUrl": "https://grafana.example.com/",
                           "allowUnsignedPlugins": ["my-dev-datasource"]}}
    rendered = render(values)
    config, _ = _operator_config(rendered, tmp_path)
    assert config.namespaces == ("plugins",)
    assert config.image == "plugin-operator.dev/plugin-operator:1.2.3"
    assert config.image_pull_policy == "Never"
    assert config.app_url == "https://grafana.example.com/"
    assert config.allow_unsigned_plugins == ("my-dev-datasource",)
    assert config.gateway_namespace == NAMESPACE
    assert config.gateway_deployment == GATEWAY
    assert rendered.get("Deployment", config.gateway_deployment)
    # Backend pods fetch archives from the operator's Service on the artifact port.
    service = rendered.get("Service", OPERATOR)
    assert config.artifacts_url == (
        f"http://{OPERATOR}.{NAMESPACE}.svc.cluster.local:{config.artifacts_port}")
    (artifacts,) = [p for p in service["spec"]["ports"] if p["port"] == config.artifacts_port]
    assert artifacts["targetPort"] == "artifacts"
    operator_pod = rendered.get("Deployment", OPERATOR)["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= operator_pod["labels"].items()
    assert _port(_container(rendered, OPERATOR), "artifacts") == config.artifacts_port


def test_image_tag_defaults_to_the_app_version(render: Render) -> None:
    for _, container in render().containers():
        assert container["image"] == "plugin-operator.dev/plugin-operator:0.1.0"
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_inline_trusted_keys_are_mounted_where_the_config_says(render: Render,
                                                               tmp_path: Path) -> None:
    rendered = render({"operator": {"trustedKeys": {"inline": {"team.asc": KEY}}}})
    config, _ = _operator_config(rendered, tmp_path)
    assert [str(p) for p in config.trusted_keys] == ["/etc/plugin-operator/keys/inline/team.asc"]
    keys = rendered.get("ConfigMap", "plugin-operator-trusted-keys")
    assert keys["data"] == {"team.asc": KEY}
    pod = rendered.get("Deployment", OPERATOR)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") ==
                 "plugin-operator-trusted-keys"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == "/etc/plugin-operator/keys/inline"


def test_trusted_keys_from_an_existing_secret(render: Render, tmp_path: Path) -> None:
    rendered = render({"operator": {"trustedKeys": {"existingSecret": "team-keys",
                                                    "keys": ["a.asc", "b.asc"]}}})
    config, _ = _operator_config(rendered, tmp_path)
    assert [str(p) for p in config.trusted_keys] == [
        "/etc/plugin-operator/keys/external/a.asc", "/etc/plugin-operator/keys/external/b.asc"]
    pod = rendered.get("Deployment", OPERATOR)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "team-keys"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == "/etc/plugin-operator/keys/external"


def test_config_changes_restart_the_operator(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = render(values).get("Deployment", OPERATOR)["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])
    assert checksum({}) != checksum({"operator": {"appUrl": "https://other.example/"}})


def test_plugin_namespace_enforces_pod_security_restricted(render: Render) -> None:
    (namespace,) = render().all("Namespace")
    assert namespace["metadata"]["name"] == "plugins"
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_cluster_wide_creates_no_namespace(render: Render, tmp_path: Path) -> None:
    rendered = render({"plugins": {"namespaces": []}})
    assert rendered.all("Namespace") == []
    config, _ = _operator_config(rendered, tmp_path)
    assert config.namespaces == ()
