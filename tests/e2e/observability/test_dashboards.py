"""Every query of the chart's dashboards, as the release shipped them in its ConfigMaps, asked
of a real Prometheus scraping a real release: each must return data for a real Plugin.

The test first makes what the panels show happen: queries through the gateway, one the
gateway refuses, and one backend container restart (its host asked to stop, as the kubelet
would). The drill-down's variables are resolved the way Grafana does, through their own
label_values queries, so a broken chain (namespace, plugin, the plugin id the host reports)
fails here too.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.install import Release
from tests.e2e.journey.conftest import Gateway, Prometheus, wait_for
from tests.e2e.kube import Cluster
from tests.e2e.observability.conftest import DATASOURCE, PLUGIN

pytestmark = pytest.mark.usefixtures("examples_running")

PLUGIN_ID = "plugin-operator-testdata-datasource"
MEMORY_LIMIT = 256 * 1024 * 1024  # examples/plugin-testdata-python.yaml
# What Grafana puts for $__rate_interval with the test's 2 s scrape interval is 8 s; a
# longer window still leaves every series several samples.
RATE_INTERVAL = "1m"
# Runs in the backend container: ask the host (PID 1) to stop, as the kubelet does; the
# container then restarts, which the operator counts.
STOP_HOST = f"import os; os.kill(1, {int(signal.SIGTERM)})"


@dataclass(frozen=True)
class Query:
    dashboard: str
    title: str
    expr: str


def _instant(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    """The instant vector ``expr`` gives now; AssertionError with Prometheus' reason if it
    refuses the expression."""
    address = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(address, timeout=10) as answer:
            data = json.load(answer)
    except urllib.error.HTTPError as error:
        raise AssertionError(f"Prometheus refused {expr}: {error.read().decode()}") from error
    assert data["status"] == "success", data
    result = data["data"]["result"]
    return result if isinstance(result, list) else [result]


def _grafana_regex(value: str) -> str:
    """Grafana's ${var:regex}: regex metacharacters escaped, inside a PromQL string."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Template variables replaced as Grafana does; unknown ones (label_replace's $1) kept."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name == "__rate_interval":
            return RATE_INTERVAL
        if name not in variables:
            return match.group(0)
        return _grafana_regex(variables[name]) if match.group(2) == "regex" \
            else variables[name]
    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", one, expr)


def label_values(prometheus: Prometheus, query: str, variables: dict[str, str]) -> list[str]:
    """A ``label_values(selector, label)`` variable's values, as Grafana's Prometheus
    datasource finds them."""
    found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", substitute(query, variables))
    assert found, f"not a label_values query: {query}"
    selector, label = found.groups()
    series = _instant(prometheus, f"group by ({label}) ({selector})")
    return sorted({s["metric"][label] for s in series if label in s["metric"]})


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries(name: str, board: dict[str, Any]) -> list[Query]:
    return [Query(name, panel["title"], target["expr"]) for panel in _panels(board)
            for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def shipped(cluster: Cluster, release: Release) -> dict[str, dict[str, Any]]:
    """The dashboards as the release's ConfigMaps hold them, by uid."""
    maps = cluster.get(release.namespace, "configmaps", "-l", "grafana_dashboard=1")["items"]
    boards = [json.loads(text) for m in maps for text in m["data"].values()]
    assert sorted(b["uid"] for b in boards) == ["plugin-operator-fleet",
                                                "plugin-operator-plugin"]
    return {b["uid"]: b for b in boards}


def _backend_pod(cluster: Cluster, namespace: str) -> dict[str, Any]:
    pods = cluster.get(namespace, "pods", "-l", f"plugin-operator.dev/plugin={PLUGIN}")["items"]
    alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(alive) == 1, f"expected one backend pod of {PLUGIN}, found {len(alive)}"
    return alive[0]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions", []))


def _restart_count(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0)) for c in pod["status"].get("containerStatuses", []))


def _has_data(prometheus: Prometheus, expr: str) -> bool:
    return bool(_instant(prometheus, expr))


@pytest.fixture(scope="module")
def activity(cluster: Cluster, plugin_namespace: str, gateways: tuple[Gateway, Gateway],
             prometheus: Prometheus) -> None:
    """What the panels show, made to happen, and seen by Prometheus."""
    allowed, refused = gateways
    ns = plugin_namespace
    for job in ("operator", "gateway", "plugin-hosts"):
        wait_for(f"Prometheus scraping job {job}", lambda job=job: prometheus.query(
            f'min(up{{job="{job}"}})') == 1.0, timeout_s=90,
            diagnostics=lambda: json.dumps(prometheus.targets(), indent=1)[-4000:])

    pod = _backend_pod(cluster, ns)
    name, before = pod["metadata"]["name"], _restart_count(pod)
    cluster.exec(ns, name, "python3", "-c", STOP_HOST)
    wait_for(f"{name} restarted and ready", lambda: (
        p := _backend_pod(cluster, ns))["metadata"]["name"] == name
        and _restart_count(p) > before and _ready(p), timeout_s=180)
    restarts = (f'plugin_operator_backend_restarts_total{{namespace="{ns}", '
                f'plugin="{PLUGIN}"}}')
    wait_for("the operator's count of the restart in Prometheus",
             lambda: (prometheus.query(f"sum({restarts})") or 0) >= 1, timeout_s=120)

    wait_for("queries through the gateway", lambda: all(
        allowed.query(DATASOURCE, scenario="random_walk").status == 200 for _ in range(10)),
        timeout_s=120)
    assert refused.query(DATASOURCE, scenario="random_walk").status == 403
    wait_for("the gateway's counts in Prometheus", lambda: _has_data(
        prometheus, f'plugin_gateway_rejected_requests_total{{plugin="{PLUGIN_ID}"}}')
        and _has_data(prometheus, f'plugin_gateway_requests_total{{plugin="{PLUGIN_ID}"}}'),
        timeout_s=60)


def _failures(prometheus: Prometheus, queries: list[Query],
              variables: dict[str, str]) -> list[str]:
    failed = []
    for query in queries:
        expr = substitute(query.expr, variables)
        try:
            if not _instant(prometheus, expr):
                failed.append(f"{query.dashboard} / {query.title}: no data from {expr}")
        except AssertionError as error:
            failed.append(f"{query.dashboard} / {query.title}: {error}")
    return failed


def _every_query_answers(prometheus: Prometheus, queries: list[Query],
                         variables: dict[str, str]) -> None:
    # Rates need two samples in their window: what has just happened may take a few
    # scrapes to show in every series.
    last: list[list[str]] = [[]]

    def none_failed() -> bool:
        last[0] = _failures(prometheus, queries, variables)
        return not last[0]

    wait_for("every panel's query to return data", none_failed, timeout_s=90,
             diagnostics=lambda: "\n".join(last[0]))


@pytest.mark.usefixtures("activity")
def test_every_fleet_panel_returns_data(prometheus: Prometheus,
                                        shipped: dict[str, dict[str, Any]]) -> None:
    board = shipped["plugin-operator-fleet"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    queries = panel_queries("fleet", board)
    assert len(queries) >= 15
    _every_query_answers(prometheus, queries, {})


@pytest.mark.usefixtures("activity")
def test_every_drill_down_panel_returns_data_for_a_real_plugin(
        prometheus: Prometheus, plugin_namespace: str,
        shipped: dict[str, dict[str, Any]]) -> None:
    board = shipped["plugin-operator-plugin"]
    queries = {v["name"]: v["query"] for v in board["templating"]["list"]
               if v["type"] == "query"}
    assert list(queries) == ["namespace", "plugin", "plugin_id"]
    # Chosen as a viewer would: each from the values its query offers.
    variables: dict[str, str] = {}
    assert plugin_namespace in label_values(prometheus, queries["namespace"], variables)
    variables["namespace"] = plugin_namespace
    assert label_values(prometheus, queries["plugin"], variables) == [PLUGIN]
    variables["plugin"] = PLUGIN
    assert label_values(prometheus, queries["plugin_id"], variables) == [PLUGIN_ID]
    variables["plugin_id"] = PLUGIN_ID
    _every_query_answers(prometheus, panel_queries("plugin", board), variables)


@pytest.mark.usefixtures("activity")
def test_the_host_reports_its_containers_memory_and_limit(
        prometheus: Prometheus, plugin_namespace: str) -> None:
    pods = f'namespace="{plugin_namespace}", pod=~"{PLUGIN}-.*"'
    limit = prometheus.query(f"max(plugin_operator_host_memory_limit_bytes{{{pods}}})")
    used = prometheus.query(f"max(plugin_operator_host_memory_working_set_bytes{{{pods}}})")
    assert limit == MEMORY_LIMIT
    # A Python host and a Python plugin: more than a few MiB, less than the limit.
    assert used is not None
    assert 4 * 1024 * 1024 < used < MEMORY_LIMIT
