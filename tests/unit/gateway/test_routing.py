"""The routing table: datasource uid -> settings with secure data -> ready endpoints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin_operator.gateway.routing import Kind, RouteLookupError, RoutingTable
from plugin_operator.models import naming
from plugin_operator.models.world import ObjectError
from tests.support.gateway_launcher import (
    datasource_object,
    gateway_pod_object,
    plugin_object,
    secret_object,
)


def backend_pod(name: str, plugin: str, ip: str, *, ready: bool = True,
                terminating: bool = False, namespace: str = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "labels": {naming.LABEL_PLUGIN: plugin}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"kind": "Pod", "metadata": meta, "status": {
        "phase": "Running", "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def table_with_pod_plugin() -> RoutingTable:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata", mode="Pod"))
    table.apply(Kind.SECRET, secret_object("s", {"key": "v4lue"}))
    table.apply(Kind.DATASOURCE, datasource_object(
        "ds", "uid-1", "td", json_data={"endpoint": "x"}, secure_from={"apiKey": ("s", "key")},
        settings_version=1234))
    table.apply(Kind.POD, backend_pod("a", "td", "10.0.0.2"))
    table.apply(Kind.POD, backend_pod("b", "td", "10.0.0.1"))
    table.apply(Kind.POD, backend_pod("c", "td", "10.0.0.3", ready=False))
    table.apply(Kind.POD, backend_pod("d", "td", "10.0.0.4", terminating=True))
    table.apply(Kind.POD, backend_pod("e", "other", "10.0.0.5"))
    return table


def test_datasource_resolves_settings_secure_data_and_ready_endpoints() -> None:
    resolved = table_with_pod_plugin().datasource("uid-1")
    assert resolved.plugin.spec.plugin_id == "testdata"
    assert resolved.endpoints == (f"10.0.0.1:{naming.GRPC_PORT}", f"10.0.0.2:{naming.GRPC_PORT}")
    settings = resolved.settings
    assert settings.uid == "uid-1"
    assert settings.name == "ds"
    assert json.loads(settings.json_data) == {"endpoint": "x"}
    assert settings.decrypted_secure_json_data == {"apiKey": "v4lue"}
    assert settings.last_updated_ms == 1234
    assert settings.id > 0


def test_datasource_id_is_stable_and_distinct() -> None:
    table = table_with_pod_plugin()
    table.apply(Kind.DATASOURCE, datasource_object("ds2", "uid-2", "td"))
    first, second = table.datasource("uid-1").settings.id, table.datasource("uid-2").settings.id
    assert first != second
    assert first == table_with_pod_plugin().datasource("uid-1").settings.id
    assert first < 2**53


def test_changes_are_seen_by_the_next_lookup() -> None:
    table = table_with_pod_plugin()
    assert table.datasource("uid-1").settings.decrypted_secure_json_data["apiKey"] == "v4lue"
    table.apply(Kind.SECRET, secret_object("s", {"key": "rotated"}))
    assert table.datasource("uid-1").settings.decrypted_secure_json_data["apiKey"] == "rotated"
    table.apply(Kind.POD, backend_pod("a", "td", "10.0.0.2"), deleted=True)
    assert table.datasource("uid-1").endpoints == (f"10.0.0.1:{naming.GRPC_PORT}",)
    table.apply(Kind.DATASOURCE, datasource_object("ds", "uid-1", "td"), deleted=True)
    with pytest.raises(RouteLookupError) as missing:
        table.datasource("uid-1")
    assert missing.value.status == 404


def test_missing_secret_and_plugin_are_explained() -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("td", "testdata"))
    table.apply(Kind.DATASOURCE, datasource_object("ds", "u", "td",
                                                   secure_from={"apiKey": ("nope", "k")}))
    with pytest.raises(RouteLookupError, match="Secret default/nope"):
        table.datasource("u")
    table.apply(Kind.DATASOURCE, datasource_object("ds2", "u2", "ghost"))
    with pytest.raises(RouteLookupError, match="Plugin 'ghost'"):
        table.datasource("u2")


def test_ambiguous_uid_needs_a_namespace() -> None:
    table = RoutingTable()
    for ns in ("a", "b"):
        table.apply(Kind.PLUGIN, plugin_object("td", "testdata", ns))
        table.apply(Kind.DATASOURCE, datasource_object("ds", "same", "td", ns))
    with pytest.raises(RouteLookupError) as ambiguous:
        table.datasource("same")
    assert ambiguous.value.status == 409
    assert table.datasource("same", "b").record.key.namespace == "b"


def test_sidecar_endpoints_need_the_annotation_and_a_ready_container() -> None:
    table = RoutingTable()
    table.apply(Kind.PLUGIN, plugin_object("side", "testdata", mode="Sidecar"))
    plugin = table.plugins[next(iter(table.plugins))]
    assert table.endpoints(plugin) == ()
    pod = gateway_pod_object({"side": 10007})
    table.apply(Kind.GATEWAY_POD, pod)
    assert table.endpoints(plugin) == ("127.0.0.1:10007",)
    pod["status"]["containerStatuses"][0]["ready"] = False
    table.apply(Kind.GATEWAY_POD, pod)
    assert table.endpoints(plugin) == ()


def test_bad_objects_are_refused_with_the_reason_and_drop_the_old_version() -> None:
    table = table_with_pod_plugin()
    broken = datasource_object("ds", "uid-1", "td")
    del broken["spec"]["pluginRef"]
    with pytest.raises(ObjectError, match="pluginRef"):
        table.apply(Kind.DATASOURCE, broken)
    with pytest.raises(RouteLookupError):
        table.datasource("uid-1")
    bad_annotation = gateway_pod_object({})
    bad_annotation["metadata"]["annotations"][naming.ANNOTATION_SIDECARS] = "[1, 2]"
    with pytest.raises(ObjectError, match="JSON object"):
        table.apply(Kind.GATEWAY_POD, bad_annotation)


def test_relist_replaces_everything_of_a_kind() -> None:
    table = table_with_pod_plugin()
    problems = table.replace_all(Kind.POD, [backend_pod("z", "td", "10.9.9.9")])
    assert problems == []
    assert table.datasource("uid-1").endpoints == (f"10.9.9.9:{naming.GRPC_PORT}",)


def test_plugin_by_id_and_app_settings() -> None:
    table = RoutingTable()
    table.apply(Kind.SECRET, secret_object("app-secret", {"token": "t"}))
    app = plugin_object("myapp", "my-app", app={"jsonData": {"a": 1}, "secureJsonDataFrom": {
        "token": {"secretKeyRef": {"name": "app-secret", "key": "token"}}}})
    table.apply(Kind.PLUGIN, app)
    plugin = table.plugin_by_id("my-app")
    settings = table.app_settings(plugin)
    assert json.loads(settings.json_data) == {"a": 1}
    assert settings.decrypted_secure_json_data == {"token": "t"}
    before = settings.last_updated_ms
    table.apply(Kind.SECRET, secret_object("app-secret", {"token": "changed"}))
    assert table.app_settings(plugin).last_updated_ms != before
    with pytest.raises(RouteLookupError) as missing:
        table.plugin_by_id("nope")
    assert missing.value.status == 404


def test_the_oldest_plugin_with_an_id_serves_it_in_its_namespace() -> None:
    """Two Plugins with one pluginId in a namespace answered 409 forever (issue 12)."""
    table = RoutingTable()
    newer = plugin_object("copy", "my-app")
    newer["metadata"]["creationTimestamp"] = "2026-11-02T00:00:00Z"
    older = plugin_object("original", "my-app")
    older["metadata"]["creationTimestamp"] = "2026-11-01T00:00:00Z"
    table.apply(Kind.PLUGIN, newer)
    table.apply(Kind.PLUGIN, older)
    assert table.plugin_by_id("my-app").key.name == "original"
    assert table.plugin_by_id("my-app", "default").key.name == "original"
    # In another namespace too: now the caller has to say which.
    table.apply(Kind.PLUGIN, plugin_object("other", "my-app", "team-b"))
    with pytest.raises(RouteLookupError) as ambiguous:
        table.plugin_by_id("my-app")
    assert ambiguous.value.status == 409
    assert "?namespace=" in str(ambiguous.value)
    assert table.plugin_by_id("my-app", "team-b").key.name == "other"
