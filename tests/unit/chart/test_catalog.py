"""The chart's catalog settings: the operator's catalog URL, and an offline bundle mounted
into the operator and used as its catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugin_operator.controller.config import load_config
from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import Rendered, RenderError

OPERATOR = "plugin-operator"
BUNDLE = "/var/lib/plugin-operator/bundle"


def _catalog_url(rendered: Rendered, tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(rendered.get("ConfigMap", "plugin-operator-config")["data"]["config.yaml"])
    return load_config(path, environ={}).catalog_url


def _pod(rendered: Rendered) -> dict[str, Any]:
    pod: dict[str, Any] = rendered.get("Deployment", OPERATOR)["spec"]["template"]["spec"]
    return pod


def test_grafana_com_by_default_and_no_bundle(render: Render, tmp_path: Path) -> None:
    rendered = render()
    assert _catalog_url(rendered, tmp_path) == "https://grafana.com/api/plugins"
    assert "catalog-bundle" not in {v["name"] for v in _pod(rendered)["volumes"]}
    mirror = render({"operator": {"catalog": {"url": "https://plugins.example.com/api/plugins"}}})
    assert _catalog_url(mirror, tmp_path) == "https://plugins.example.com/api/plugins"


@pytest.mark.parametrize(("bundle", "volume"), [
    ({"hostPath": "/srv/plugin-bundle"},
     {"hostPath": {"path": "/srv/plugin-bundle", "type": "Directory"}}),
    ({"existingClaim": "plugin-bundle"},
     {"persistentVolumeClaim": {"claimName": "plugin-bundle", "readOnly": True}}),
])
def test_a_bundle_is_mounted_read_only_and_becomes_the_catalog(
        render: Render, tmp_path: Path, bundle: dict[str, str], volume: dict[str, Any]) -> None:
    rendered = render({"operator": {"catalog": {"bundle": bundle}}})
    assert _catalog_url(rendered, tmp_path) == f"file://{BUNDLE}/plugins"
    pod = _pod(rendered)
    (mounted,) = [v for v in pod["volumes"] if v["name"] == "catalog-bundle"]
    assert {k: v for k, v in mounted.items() if k != "name"} == volume
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"]
                if m["name"] == "catalog-bundle"]
    assert mount == {"name": "catalog-bundle", "mountPath": BUNDLE, "readOnly": True}


def test_bad_catalog_values_are_refused(render: Render) -> None:
    with pytest.raises(RenderError) as error:
        render({"operator": {"catalog": {"bundle": {"hostPath": "/a", "existingClaim": "b"}}}})
    assert "set hostPath or existingClaim, not both" in str(error.value)
    with pytest.raises(RenderError) as error:
        render({"operator": {"catalog": {"url": "file:///bundle"}}})
    assert "/operator/catalog/url" in str(error.value)
