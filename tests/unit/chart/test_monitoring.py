"""Prometheus Operator objects only when its API exists; scrape annotations otherwise."""

from __future__ import annotations

from plugin_operator.models import naming
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import Rendered

MONITORING = "monitoring.coreos.com/v1"


def _monitors(rendered: Rendered) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects
                  if o["apiVersion"] == MONITORING)


def test_no_monitors_without_the_prometheus_operator(render: Render) -> None:
    assert _monitors(render()) == []


def test_monitors_when_the_api_is_declared(render: Render) -> None:
    rendered = render(api_versions=[MONITORING])
    assert _monitors(rendered) == ["PodMonitor/plugin-operator-plugin-backends",
                                   "PrometheusRule/plugin-operator",
                                   "ServiceMonitor/plugin-operator",
                                   "ServiceMonitor/plugin-operator-gateway"]
    for name, port in (("plugin-operator", "metrics"), ("plugin-operator-gateway", "http")):
        monitor = rendered.get("ServiceMonitor", name)
        service = rendered.get("Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= \
            service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port]
        assert port in [p["name"] for p in service["spec"]["ports"]]
    pods = rendered.get("PodMonitor", "plugin-operator-plugin-backends")["spec"]
    assert pods["selector"]["matchLabels"].items() <= naming.backend_labels("p", "x").items()
    assert pods["podMetricsEndpoints"][0]["port"] == naming.HTTP_PORT_NAME
    assert pods["namespaceSelector"] == {"matchNames": ["plugins"]}


def test_monitors_can_be_refused(render: Render) -> None:
    values = {"monitoring": {"prometheusOperator": {"enabled": False}}}
    assert _monitors(render(values, api_versions=[MONITORING])) == []


def test_scrape_annotations_point_at_the_metrics_ports(render: Render) -> None:
    rendered = render()
    for name, port in (("plugin-operator", "8080"), ("plugin-operator-gateway", "8000")):
        annotations = rendered.get("Deployment", name)["spec"]["template"]["metadata"][
            "annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"
    quiet = render({"monitoring": {"scrapeAnnotations": False}})
    for deployment in quiet.all("Deployment"):
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        assert "prometheus.io/scrape" not in annotations
