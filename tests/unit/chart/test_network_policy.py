"""Only the gateway, the operator and peer backends reach plugin backends' gRPC; only
Prometheus their metrics."""

from __future__ import annotations

from typing import Any

import pytest

from plugin_operator.models import naming
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import NAMESPACE, Manifest, Rendered, RenderError


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
            if {"protocol": "TCP", "port": naming.GRPC_PORT} in rule["ports"]
            and "namespaceSelector" in rule["from"][0]]
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


def test_backends_reach_each_others_grpc_in_their_namespace(render: Render) -> None:
    # A pod's attach port balances calls over its peers' gRPC (local) ports.
    spec = _policy(render())["spec"]
    backend = naming.backend_labels("my-plugin", "grafana-x-ds")
    only_grpc = [{"protocol": "TCP", "port": naming.GRPC_PORT}]
    for rules, side in ((spec["ingress"], "from"), (spec["egress"], "to")):
        peers = [rule for rule in rules if rule["ports"] == only_grpc
                 and rule[side] == [{"podSelector": rule[side][0]["podSelector"]}]]
        assert len(peers) == 1, f"no rule for peer backends in {side}"
        (peer,) = peers[0][side]
        assert _selects(peer["podSelector"], backend)  # no namespaceSelector: same namespace
    assert not _selects(peers[0]["to"][0]["podSelector"],
                        _pod_labels(render(), "plugin-operator-gateway"))


def test_backends_reach_only_dns_the_artifact_cache_and_their_peers(render: Render) -> None:
    rendered = render()
    egress = _policy(rendered)["spec"]["egress"]
    assert len(egress) == 4
    dns, artifacts, mirror, peers = egress
    # NetworkPolicy sees the DNS pod's own port after DNAT: 53, or 1053 as our local
    # cluster's CoreDNS uses, over both protocols.
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [
        ("TCP", 53), ("TCP", 1053), ("UDP", 53), ("UDP", 1053)]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert peers["ports"] == [{"protocol": "TCP", "port": naming.GRPC_PORT}]
    (peer,) = artifacts["to"]
    assert artifacts["ports"] == [{"protocol": "TCP", "port": 8081}]
    assert _selects(peer["podSelector"], _pod_labels(rendered, "plugin-operator"))
    assert not _selects(peer["podSelector"], _pod_labels(rendered, "plugin-operator-gateway"))
    # The gateways' copies of the archives, on their artifact port only.
    (gateway,) = mirror["to"]
    assert mirror["ports"] == [{"protocol": "TCP", "port": 8001}]
    assert gateway["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": NAMESPACE}
    assert _selects(gateway["podSelector"], _pod_labels(rendered, "plugin-operator-gateway"))
    assert not _selects(gateway["podSelector"], _pod_labels(rendered, "plugin-operator"))


def test_the_gateways_artifact_port_is_the_one_they_serve_on(render: Render) -> None:
    rendered = render({"gateway": {"artifactMirror": {"port": 9001}}})
    egress = _policy(rendered)["spec"]["egress"]
    assert {"protocol": "TCP", "port": 9001} in [p for rule in egress for p in rule["ports"]]
    container = rendered.get("Deployment", "plugin-operator-gateway")["spec"]["template"][
        "spec"]["containers"][0]
    assert {"name": "artifacts", "containerPort": 9001, "protocol": "TCP"} in container["ports"]
    off = render({"gateway": {"artifactMirror": {"enabled": False}}})
    assert len(_policy(off)["spec"]["egress"]) == 3


def test_metrics_by_default_only_from_prometheus_in_the_monitoring_namespace(
        render: Render) -> None:
    ingress = _policy(render())["spec"]["ingress"]
    (metrics,) = [rule for rule in ingress
                  if {"protocol": "TCP", "port": naming.HTTP_PORT} in rule["ports"]]
    for peer in metrics["from"]:
        # A bare label would let any pod that carries it, in any namespace, scrape.
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        assert peer["podSelector"] == {
            "matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_dns_ports_are_a_value(render: Render) -> None:
    egress = _policy(render({"networkPolicy": {"dns": {"ports": [5353]}}}))["spec"]["egress"]
    assert egress[0]["ports"] == [{"protocol": "UDP", "port": 5353},
                                  {"protocol": "TCP", "port": 5353}]
    with pytest.raises(RenderError) as error:
        render({"networkPolicy": {"dns": {"ports": []}}})
    assert "/networkPolicy/dns/ports" in str(error.value)
    with pytest.raises(RenderError):
        render({"networkPolicy": {"dns": {"ports": ["domain"]}}})


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
