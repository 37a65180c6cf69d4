"""PluginContext as Grafana fills it, and the headers forwarded with queries."""

from __future__ import annotations

import re

from plugin_operator.gateway import context
from plugin_operator.gateway.routing import Kind, RoutingTable
from tests.support.gateway_launcher import datasource_object, plugin_object


def test_datasource_context_carries_settings_user_and_grafana_facts() -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", "team-a"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td", "team-a"))
    resolved = table.datasource("u")
    defaults = context.ContextDefaults(grafana_version="11.5.0")
    ctx = context.datasource_context(defaults, resolved.plugin, resolved.settings,
                                     context.caller("system:serviceaccount:team-a:viewer"),
                                     "team-a")
    assert ctx.plugin_id == "testdata"
    assert ctx.plugin_version == "1.0.0"
    assert ctx.datasource_instance_settings is resolved.settings
    assert ctx.app_instance_settings is None
    assert ctx.user is not None
    assert ctx.user.login == "system:serviceaccount:team-a:viewer"
    assert ctx.namespace == "team-a"
    assert ctx.org_id == 1
    assert re.fullmatch(r"Grafana/11\.5\.0 \(linux; \w+\)", ctx.user_agent)
    assert ctx.grafana_config["GF_SQL_MAX_OPEN_CONNS_DEFAULT"] == "100"


def test_anonymous_callers_have_no_user_and_metrics_only_the_plugin_id() -> None:
    assert context.caller("") is None
    ctx = context.metrics_context("p")
    assert ctx.plugin_id == "p"
    assert ctx.datasource_instance_settings is None


def test_forwarded_headers_never_include_the_callers_credential() -> None:
    headers = context.forwarded_headers(
        {"Authorization": "Bearer secret", "X-Panel-Id": "4", "Cookie": "a=b"}, "u", 1)
    assert headers == {"http_X-Panel-Id": "4", "http_X-Datasource-Uid": "u",
                       "http_X-Grafana-Org-Id": "1"}


def test_context_cache_reuses_a_message_until_the_settings_version_changes() -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", "team-a"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td", "team-a",
                                                   json_data={"v": 1}))
    cache = context.DatasourceContextCache(context.ContextDefaults())
    first = table.datasource("u")
    message = cache.get(first.plugin, first.settings, "alice", "team-a")
    assert cache.get(first.plugin, first.settings, "alice", "team-a") is message
    assert message.user.login == "alice"
    assert message.dataSourceInstanceSettings.lastUpdatedMS == first.settings.last_updated_ms
    other_user = cache.get(first.plugin, first.settings, "bob", "team-a")
    assert other_user.user.login == "bob"

    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td", "team-a",
                                                   json_data={"v": 2}, settings_version=2))
    second = table.datasource("u")
    fresh = cache.get(second.plugin, second.settings, "alice", "team-a")
    assert fresh is not message
    assert b'"v":2' in fresh.dataSourceInstanceSettings.jsonData.replace(b" ", b"")
    assert fresh.dataSourceInstanceSettings.lastUpdatedMS == second.settings.last_updated_ms


def test_context_cache_stays_bounded() -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td"))
    resolved = table.datasource("u")
    cache = context.DatasourceContextCache(context.ContextDefaults(), max_entries=3)
    for index in range(10):
        cache.get(resolved.plugin, resolved.settings, f"user-{index}", "default")
        assert len(cache._entries) <= 3


def test_query_message_around_a_cached_context_is_the_full_conversion() -> None:
    # The query path builds its request around the cached PluginContext message; the bytes
    # on the wire are those of the plain conversion of the same request.
    from plugin_operator.protocol import convert
    from plugin_operator.protocol.models import DataQuery, FrameFormat, QueryDataRequest, TimeRange

    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", "team-a"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td", "team-a",
                                                   json_data={"v": 1}))
    resolved = table.datasource("u")
    defaults = context.ContextDefaults()
    queries = [DataQuery("A", "t", 10, 1000, TimeRange(1, 2), b'{"refId":"A"}'),
               DataQuery("B", "", 5, 10, TimeRange(1, 2), b"{}")]
    headers = context.forwarded_headers({"X-Panel-Id": "3"}, "u", 1)
    cached = context.DatasourceContextCache(defaults).get(resolved.plugin, resolved.settings,
                                                          "alice", "team-a")
    built = convert.query_data_message(cached, queries, headers, FrameFormat.JSON)
    plain = convert.query_data_request_to_proto(QueryDataRequest(
        context.datasource_context(defaults, resolved.plugin, resolved.settings,
                                   context.caller("alice"), "team-a"),
        queries, headers, FrameFormat.JSON))
    assert built == plain
    assert built.SerializeToString(deterministic=True) == \
        plain.SerializeToString(deterministic=True)
