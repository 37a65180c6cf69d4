"""Only the gateway reaches plugin backends' gRPC; only Prometheus their metrics."""

from __future__ import annotations

from typing import Any

from plugin_operator.models import naming
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import NAMESPACE, Manifest, Rendered


def _policy(rendered: Rendered, namespace: str = "plugins") -> Manifest:
    return rendered.get("NetworkPolicy", "plugin-operator-plugin-backends", namespace)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector["matchLabels"].items() <= labels.items())


def _pod_labels(rendered: Rendered, deployment: str) -> dict[str, str]:
    labels: dict[str, str] = rendered.get("Deployment", deployment)["spec"]["template"][
        "metadata"]["labels"]
    return labels


def test_selects_every_backend_pod_the_operator_makes(render: Render) -> None:
    spec = _policy(render())["spec"]
    assert _selects(spec["podSelector"], naming.backend_labels("my-plugin", "grafana-x-ds"))
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert not _selects(spec["podSelector"], _pod_labels(render(), "plugin-operator-gateway"))


def test_grpc_only_from_this_releases_gateway_and_operator(render: Render) -> None:
    # The gateway sends queries; the operator runs DataSourceInstance health checks.
    rendered = render()
    ingress = _policy(rendered)["spec"]["ingress"]
    grpc = [rule for rule in ingress
            if {"protocol": "TCP", "port": naming.GRPC_PORT} in rule["ports"]]
    assert len(grpc) == 1
    gateway, operator = grpc[0]["from"]
    for peer in (gateway, operator):
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": NAMESPACE}
    assert _selects(gateway["podSelector"], _pod_labels(rendered, "plugin-operator-gateway"))
    assert not _selects(gateway["podSelector"], _pod_labels(rendered, "plugin-operator"))
    assert _selects(operator["podSelector"], _pod_labels(rendered, "plugin-operator"))
    assert not _selects(operator["podSelector"],
                        _pod_labels(rendered, "plugin-operator-gateway"))
    # Another release's gateway in another namespace is not let in.
    other = render(namespace="elsewhere")
    assert _policy(other)["spec"]["ingress"][0]["from"][0]["namespaceSelector"][
        "matchLabels"] == {"kubernetes.io/metadata.name": "elsewhere"}


def test_metrics_only_from_the_configured_scrapers(render: Render) -> None:
    scraper = {"ipBlock": {"cidr": "10.0.0.5/32"}}
    ingress = _policy(render({"networkPolicy": {"metricsFrom": [scraper]}}))["spec"]["ingress"]
    metrics = [rule for rule in ingress
               if {"protocol": "TCP", "port": naming.HTTP_PORT} in rule["ports"]]
    assert metrics == [{"from": [scraper], "ports": [{"protocol": "TCP",
                                                      "port": naming.HTTP_PORT}]}]
    # No rule opens a port beyond gRPC and metrics.
    ports = {p["port"] for rule in ingress for p in rule["ports"]}
    assert ports == {naming.GRPC_PORT, naming.HTTP_PORT}
    for rule in ingress:
        assert rule["from"], "an ingress rule without peers would admit everyone"


def test_backends_reach_only_dns_and_the_artifact_cache(render: Render) -> None:
    rendered = render()
    egress = _policy(rendered)["spec"]["egress"]
    assert len(egress) == 2
    dns, artifacts = egress
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    (peer,) = artifacts["to"]
    assert artifacts["ports"] == [{"protocol": "TCP", "port": 8081}]
    assert _selects(peer["podSelector"], _pod_labels(rendered, "plugin-operator"))
    assert not _selects(peer["podSelector"], _pod_labels(rendered, "plugin-operator-gateway"))


def test_extra_egress_is_added(render: Render) -> None:
    extra = {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
             "ports": [{"protocol": "TCP", "port": 5432}]}
    egress = _policy(render({"networkPolicy": {"extraEgress": [extra]}}))["spec"]["egress"]
    assert egress[-1] == extra


def test_one_policy_per_plugin_namespace(render: Render) -> None:
    rendered = render({"plugins": {"namespaces": ["a", "b"]}})
    assert sorted(p["metadata"]["namespace"] for p in rendered.all("NetworkPolicy")) == ["a", "b"]
    cluster_wide = render({"plugins": {"namespaces": []},
                           "networkPolicy": {"namespaces": ["team-x"]}})
    assert [p["metadata"]["namespace"] for p in cluster_wide.all("NetworkPolicy")] == ["team-x"]


def test_can_be_turned_off(render: Render) -> None:
    assert render({"networkPolicy": {"enabled": False}}).all("NetworkPolicy") == []
