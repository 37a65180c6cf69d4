"""Grafana dashboards for plugin-operator, written as code with Grafana's
grafana-foundation-sdk and rendered to JSON in the chart (charts/plugin-operator/dashboards/),
from where monitoring.dashboards ships them as ConfigMaps for Grafana's dashboard sidecar.

    python -m dashboards.generate            # rewrite the JSON files
    python -m dashboards.generate --check    # exit 1 if they differ from this code

Every expression names only series that we export: the operator's
(controller/metrics.py, controller/artifacts.py), the gateway's (gateway/metrics.py), the
plugin host's (host/http.py, host/cgroup.py) and plugin-front's (tools/plugin-front/metrics.go).
The host and plugin-front know nothing of Kubernetes: their series are told apart by the
``namespace`` and ``pod`` labels that the scrape adds (a PodMonitor does, and so does the
e2e test's Prometheus), and a Plugin's pods by their deterministic names
(``<plugin>-<10 hex digits of the spec hash>-<ordinal>``, models/naming.py). Plugins with
names long enough to be shortened in pod names, and Sidecar-mode backends, whose pods are
another workload's, are not matched by those panels.

tests/e2e/observability evaluates every expression here against a real Prometheus that
scrapes a real release; tests/unit/dashboards checks that the committed JSON is this code's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLink,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    VariableHide,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT = REPO_ROOT / "charts" / "plugin-operator" / "dashboards"
TAG = "plugin-operator"
FLEET_UID = "plugin-operator-fleet"
PLUGIN_UID = "plugin-operator-plugin"

# Every panel asks the Prometheus the viewer picks in the dashboard's datasource variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# The selected Plugin's backend pods (see the module's docstring); :regex escapes the dots a
# Plugin's name may hold.
PLUGIN_PODS = 'namespace="$namespace", pod=~"${plugin:regex}-[0-9a-f]{10}-[0-9]+s?"'
# A Plugin's name recovered from its pods' names, for the fleet's per-Plugin host panels.
POD_TO_PLUGIN = '"plugin", "$1", "pod", "(.+)-[0-9a-f]{10}-[0-9]+s?"'
# Grafana's rate window: at least four scrape intervals, whatever the resolution.
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", *, instant: bool = False,
           table_format: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    if table_format:
        query = query.format(PromQueryFormat.TABLE)
    return query


def _legend_table() -> common_builders.VizLegendOptions:
    return (common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT).show_legend(True)
            .calcs(["lastNotNull", "max"]))


def _graph(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
           width: int = 12, height: int = 8, stacked: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height).legend(_legend_table())
             .fill_opacity(10).line_width(1))
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig()
                               .mode(common.StackingMode.NORMAL))
    for letter, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(letter))
    return panel


def _stat(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
          width: int = 6, height: int = 4) -> stat.Panel:
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height)
             .graph_mode(common.BigValueGraphMode.NONE)
             .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"])))
    for letter, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(letter))
    return panel


def _table(title: str, description: str, query: prometheus.Dataquery, *,
           width: int = 12, height: int = 8,
           links: list[Builder[DashboardLink]] | None = None) -> table.Panel:
    # An instant query as a table has a Time and a Value column besides the labels; the
    # labels are what these tables show.
    hide = DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, "Value": True, "__name__": True}})
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .span(width).height(height).with_target(query.ref_id("A"))
             .with_transformation(hide))
    if links:
        panel = panel.data_links(links)
    return panel


def _datasource_variable() -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def _query_variable(name: str, label: str, query: str, *,
                    hidden: bool = False) -> dash.QueryVariable:
    variable = (dash.QueryVariable(name).label(label).query(query).datasource(DATASOURCE)
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(VariableSort.ALPHABETICAL_ASC))
    if hidden:
        variable = variable.hide(VariableHide.HIDE_VARIABLE)
    return variable


def _base(title: str, uid: str, description: str) -> dash.Dashboard:
    return (dash.Dashboard(title).uid(uid).description(description).tags([TAG])
            .editable().tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s")
            .time("now-1h", "now").timezone(common.TimeZoneBrowser)
            .link(dash.DashboardLink("plugin-operator").type(DashboardLinkType.DASHBOARDS)
                  .tags([TAG]).as_dropdown(True).include_vars(False).keep_time(True))
            .with_variable(_datasource_variable()))


def fleet_overview() -> dash.Dashboard:
    drill_down: Builder[DashboardLink] = (dash.DashboardLink("Open this Plugin")
                  .url(f"/d/{PLUGIN_UID}?var-namespace=${{__data.fields.namespace}}"
                       "&var-plugin=${__data.fields.plugin}&${__url_time_range}"))
    gateway_requests = f"rate(plugin_gateway_requests_total[{RATE}])"
    return (
        _base("plugin-operator / Fleet", FLEET_UID,
              "Every Plugin and DataSourceInstance the operator watches, the plugin hosts "
              "and the gateway's traffic by plugin.")
        .with_row(dash.Row("Plugins"))
        .with_panel(_stat(
            "Plugins by phase", "How many Plugins are in each phase (the operator's last "
            "status of each).", "none",
            _query("sum by (phase) (plugin_operator_plugins)", "{{phase}}", instant=True),
            width=12))
        .with_panel(_stat(
            "DataSourceInstances by health", "How many DataSourceInstances the last "
            "CheckHealth found OK, ERROR or not yet known.", "none",
            _query("sum by (health) (plugin_operator_datasources)", "{{health}}",
                   instant=True), width=12))
        .with_panel(_table(
            "Plugins", "Each Plugin and the phase its status shows; a row opens that "
            "Plugin's dashboard.",
            _query("max by (namespace, plugin, phase) (plugin_operator_plugin_phase)",
                   instant=True, table_format=True), links=[drill_down]))
        .with_panel(_table(
            "DataSourceInstances", "Each DataSourceInstance and the status of its last "
            "health check (status.health says why).",
            _query("max by (namespace, datasource, health) "
                   "(plugin_operator_datasource_health)", instant=True, table_format=True)))
        .with_panel(_graph(
            "Backend restarts", "Container restarts and replaced pods the operator counted, "
            "by Plugin.", "short",
            _query("sum by (namespace, plugin) "
                   f"(increase(plugin_operator_backend_restarts_total[{RATE}]))",
                   "{{namespace}}/{{plugin}}"), width=8))
        .with_panel(_graph(
            "Plugin restarts inside pods", "Times a plugin host restarted its plugin "
            "process itself after it exited, by Plugin.", "short",
            _query("sum by (namespace, plugin) (label_replace(increase("
                   f"plugin_operator_host_plugin_restarts_total[{RATE}]), {POD_TO_PLUGIN}))",
                   "{{namespace}}/{{plugin}}"), width=8))
        .with_panel(_graph(
            "Ready replicas", "Each Plugin's ready backend pods, as its pods' plugin-front "
            "sees them in the peers Service.", "short",
            _query("max by (namespace, plugin) (label_replace("
                   f'plugin_operator_front_peers{{state="known"}}, {POD_TO_PLUGIN}))',
                   "{{namespace}}/{{plugin}}"), width=8))
        .with_panel(_graph(
            "Memory against the limit", "The highest share of its memory limit that any of "
            "a Plugin's backend containers uses (working set / limit, from the host's "
            "cgroup); containers without a limit are not shown.", "percentunit",
            _query("max by (namespace, plugin) (label_replace("
                   "plugin_operator_host_memory_working_set_bytes / "
                   f"plugin_operator_host_memory_limit_bytes, {POD_TO_PLUGIN}))",
                   "{{namespace}}/{{plugin}}"), width=24))
        .with_row(dash.Row("Gateway"))
        .with_panel(_graph(
            "Requests by plugin", "Requests the gateway answered, per second, by plugin id "
            "(empty: the gateway's own routes).", "reqps",
            _query(f"sum by (plugin) ({gateway_requests})", "{{plugin}}"), width=8))
        .with_panel(_graph(
            "Errors by plugin", "The share of each plugin's requests answered with a 5xx "
            "status.", "percentunit",
            # Without a 5xx series the division would have no data: 0 then.
            _query(f'(sum by (plugin) (rate(plugin_gateway_requests_total{{status=~"5.."}}'
                   f"[{RATE}])) or sum by (plugin) ({gateway_requests}) * 0) / "
                   f"sum by (plugin) ({gateway_requests})", "{{plugin}}"), width=8))
        .with_panel(_graph(
            "Backend latency by plugin", "The 99th and 50th percentile of the gRPC calls "
            "from the gateway to each plugin's backends.", "s",
            _query("histogram_quantile(0.99, sum by (plugin, le) (rate("
                   f"plugin_gateway_upstream_duration_seconds_bucket[{RATE}])))",
                   "p99 {{plugin}}"),
            _query("histogram_quantile(0.5, sum by (plugin, le) (rate("
                   f"plugin_gateway_upstream_duration_seconds_bucket[{RATE}])))",
                   "p50 {{plugin}}"), width=8))
        .with_panel(_graph(
            "Request latency by route", "The 99th percentile of whole requests through the "
            "gateway, by route (stream subscriptions last as long as their caller "
            "listens).", "s",
            _query("histogram_quantile(0.99, sum by (route, le) (rate("
                   f"plugin_gateway_request_duration_seconds_bucket[{RATE}])))",
                   "{{route}}"), width=8))
        .with_panel(_graph(
            "In flight by plugin", "Requests in progress in the gateways, by plugin.",
            "short", _query("sum by (plugin) (plugin_gateway_in_flight_requests)",
                            "{{plugin}}"), width=8))
        .with_panel(_graph(
            "Refused before a plugin", "Requests the gateway refused before calling a "
            "plugin, per second, by plugin and reason.", "reqps",
            _query("sum by (plugin, reason) "
                   f"(rate(plugin_gateway_rejected_requests_total[{RATE}]))",
                   "{{plugin}} {{reason}}"), width=8))
        .with_row(dash.Row("Operator"))
        .with_panel(_graph(
            "Reconcile passes", "The operator's passes per second, by kind of object and "
            "result.", "ops",
            _query(f"sum by (kind, result) (rate(plugin_operator_reconciles_total[{RATE}]))",
                   "{{kind}} {{result}}"), width=8))
        .with_panel(_graph(
            "Reconcile duration", "The 99th percentile of one pass, by kind of object.", "s",
            _query("histogram_quantile(0.99, sum by (kind, le) (rate("
                   f"plugin_operator_reconcile_duration_seconds_bucket[{RATE}])))",
                   "{{kind}}"), width=8))
        .with_panel(_graph(
            "Artifact cache", "Bytes of archives in the operator's cache, those Plugins use "
            "(never evicted), and the bound (0: none).", "bytes",
            _query("sum(plugin_operator_artifact_cache_bytes)", "cached"),
            _query("sum(plugin_operator_artifact_cache_in_use_bytes)", "in use"),
            _query("sum(plugin_operator_artifact_cache_max_bytes)", "bound"), width=8))
    )


def plugin_drill_down() -> dash.Dashboard:
    plugin = 'namespace="$namespace", plugin="$plugin"'
    upstream = 'plugin="$plugin_id"'
    return (
        _base("plugin-operator / Plugin", PLUGIN_UID,
              "One Plugin: its phase, its backend pods, their memory and restarts, the calls "
              "its plugins answered and its traffic through the gateway.")
        .with_variable(_query_variable(
            "namespace", "Namespace", "label_values(plugin_operator_plugin_phase, namespace)"))
        .with_variable(_query_variable(
            "plugin", "Plugin",
            'label_values(plugin_operator_plugin_phase{namespace="$namespace"}, plugin)'))
        # The gateway labels its series with plugin.json's id, which the host reports.
        .with_variable(_query_variable(
            "plugin_id", "Plugin id",
            f"label_values(plugin_operator_host_plugin_info{{{PLUGIN_PODS}}}, plugin_id)",
            hidden=True))
        .with_row(dash.Row("State"))
        .with_panel(_stat(
            "Phase", "The phase the Plugin's status shows now "
            "(kubectl get plugin says why in status.message).", "none",
            _query(f"max by (phase) (plugin_operator_plugin_phase{{{plugin}}})", "{{phase}}",
                   instant=True), width=6))
        .with_panel(_stat(
            "Restarts counted by the operator", "Container restarts and replaced pods "
            "since the operator started.", "none",
            _query(f"sum(plugin_operator_backend_restarts_total{{{plugin}}})", "restarts",
                   instant=True), width=6))
        .with_panel(
            statetimeline.Panel().title("Phase over time").description(
                "When the Plugin was in which phase: the last stretch outside Running is its "
                "last failure (status.lastFailure has its first and last lines).")
            .datasource(DATASOURCE).span(12).height(4)
            .with_target(_query(f"max by (phase) (plugin_operator_plugin_phase{{{plugin}}})",
                                "{{phase}}").ref_id("A")))
        .with_row(dash.Row("Pods"))
        .with_panel(_table(
            "Backend pods", "The Plugin's backend pods the scrape finds, and the plugin id "
            "and version each runs.",
            _query(f"max by (pod, plugin_id, version) "
                   f"(plugin_operator_host_plugin_info{{{PLUGIN_PODS}}})", instant=True,
                   table_format=True)))
        .with_panel(_graph(
            "Processes up", "1 while each pod's plugin process (plugin) and gRPC front "
            "(front) run.", "short",
            _query(f"max by (pod) (plugin_operator_host_plugin_up{{{PLUGIN_PODS}}})",
                   "plugin {{pod}}"),
            _query(f"max by (pod) (plugin_operator_host_front_up{{{PLUGIN_PODS}}})",
                   "front {{pod}}")))
        .with_panel(_graph(
            "Memory against the limit", "Each backend container's working set (its cgroup's "
            "usage less inactive file pages, what the kubelet evicts and OOM-kills by) and "
            "its memory limit.", "bytes",
            _query("max by (pod) "
                   f"(plugin_operator_host_memory_working_set_bytes{{{PLUGIN_PODS}}})",
                   "working set {{pod}}"),
            _query(f"max by (pod) (plugin_operator_host_memory_limit_bytes{{{PLUGIN_PODS}}})",
                   "limit {{pod}}")))
        .with_panel(_graph(
            "Restarts", "Container restarts and replaced pods the operator counted, and the "
            "times each pod's host restarted the plugin process itself.", "short",
            _query(f"sum(increase(plugin_operator_backend_restarts_total{{{plugin}}}[{RATE}]))",
                   "container or pod"),
            _query("sum by (pod) (increase("
                   f"plugin_operator_host_plugin_restarts_total{{{PLUGIN_PODS}}}[{RATE}]))",
                   "in pod {{pod}}")))
        .with_row(dash.Row("Calls"))
        .with_panel(_graph(
            "Calls by method and status", "Calls the Plugin's plugin-front passed on, per "
            "second, by port (local: to the pod's plugin; attach: balanced over the "
            "replicas), method and gRPC status.", "reqps",
            _query("sum by (port, method, code) "
                   f"(rate(plugin_operator_front_calls_total{{{PLUGIN_PODS}}}[{RATE}]))",
                   "{{port}} {{method}} {{code}}"), stacked=True))
        .with_panel(_graph(
            "Gateway requests by route and status", "Requests for this plugin id through "
            "the gateway, per second.", "reqps",
            _query("sum by (route, status) "
                   f"(rate(plugin_gateway_requests_total{{{upstream}}}[{RATE}]))",
                   "{{route}} {{status}}"), stacked=True))
        .with_panel(_graph(
            "Gateway requests by datasource", "Requests for this plugin id through the "
            "gateway, per second, by DataSourceInstance uid.", "reqps",
            _query("sum by (datasource_uid) "
                   f"(rate(plugin_gateway_requests_total{{{upstream}}}[{RATE}]))",
                   "{{datasource_uid}}")))
        .with_panel(_graph(
            "Backend latency by method", "The 99th percentile of the gateway's gRPC calls "
            "to this plugin, by method.", "s",
            _query("histogram_quantile(0.99, sum by (method, le) (rate("
                   f"plugin_gateway_upstream_duration_seconds_bucket{{{upstream}}}[{RATE}])))",
                   "{{method}}")))
    )


DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "plugin-operator-fleet.json": fleet_overview,
    "plugin-operator-plugin.json": plugin_drill_down,
}


def render(builder: dash.Dashboard) -> str:
    """The dashboard's JSON as committed: keys sorted, so a diff shows only real changes."""
    board = builder.build()
    # Grafana tells panels apart by id (links to a panel, the panel editor); the builders
    # leave every id 0.
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help=f"where the JSON files go (default {OUTPUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file differs from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        target = args.output / name
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            args.output.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target}")
    if args.check and stale:
        print(f"out of date in {args.output}: {', '.join(stale)} "
              "(run hack/gen-dashboards.sh)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
