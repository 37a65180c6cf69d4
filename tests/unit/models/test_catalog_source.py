"""spec.source.catalog as the models read it, the version it resolved to in status, and
the gateway seeing what a catalog's latest resolved to."""

from __future__ import annotations

from typing import Any

import pytest

from plugin_operator.models.resources import CatalogSource, SpecError, parse_plugin_spec
from plugin_operator.models.status import ArtifactStatus, PluginStatus
from plugin_operator.models.world import parse_plugin

ID = "acme-test-datasource"


def _spec(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"pluginId": ID, "source": source, **extra}


def test_the_version_comes_from_spec_version_or_from_the_catalog_source() -> None:
    from_spec = parse_plugin_spec(_spec({"catalog": {}}, version="1.2.0"))
    assert from_spec.source == CatalogSource(version="1.2.0")
    assert from_spec.version == "1.2.0"
    named = parse_plugin_spec(_spec({"catalog": {"version": "1.3.0",
                                                 "url": "https://mirror.example/api/plugins/"}}))
    assert named.version == "1.3.0"
    assert named.source == CatalogSource("1.3.0", "https://mirror.example/api/plugins")
    latest = parse_plugin_spec(_spec({"catalog": {"version": "latest"}, "sha256": "a" * 64}))
    assert isinstance(latest.source, CatalogSource)
    assert latest.source.latest
    assert latest.source.sha256 == "a" * 64
    assert latest.version == ""  # known once resolved: status.artifact.catalogVersion


@pytest.mark.parametrize(("spec", "field", "problem"), [
    (_spec({"catalog": {}}), "spec.source.catalog.version", "is required"),
    (_spec({"catalog": {"version": "latest"}}, version="1.0.0"),
     "spec.source.catalog.version", "contradicts spec.version"),
    (_spec({"catalog": {"version": "1.0.0", "url": "file:///etc"}}), "spec.source.catalog.url",
     "http:// or https://"),
    (_spec({"catalog": {"version": "1.0.0"}, "url": "https://x/p.zip"}), "spec.source",
     "exactly one of"),
    (_spec({"url": "https://x/p.zip"}), "spec.version", "is required"),
])
def test_unusable_catalog_sources_name_the_field(spec: dict[str, Any], field: str,
                                                 problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_plugin_spec(spec)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_the_resolved_version_round_trips_through_status() -> None:
    status = PluginStatus(artifact=ArtifactStatus("a" * 64, 10, catalog_version="2.0.0"))
    assert status.to_json()["artifact"]["catalogVersion"] == "2.0.0"
    assert PluginStatus.parse(status.to_json()) == status
    # Leaving the catalog removes the key from the stored status.
    assert PluginStatus(artifact=ArtifactStatus("a" * 64, 10)).patch(status.to_json()) == {
        "artifact": {"catalogVersion": None}}


def test_the_gateway_sees_the_version_latest_resolved_to() -> None:
    obj = {"metadata": {"namespace": "ns", "name": "p"},
           "spec": _spec({"catalog": {"version": "latest"}}),
           "status": {"artifact": {"sha256": "a" * 64, "catalogVersion": "2.0.0"}}}
    assert parse_plugin(obj).spec.version == "2.0.0"

