"""Grafana dashboards as ConfigMaps for Grafana's dashboard sidecar (monitoring.dashboards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import CHART, KUBE_VERSION, NAMESPACE, Helm, Manifest, RenderError

DASHBOARD_FILES = sorted((CHART / "dashboards").glob("*.json"))
ON = {"monitoring": {"dashboards": {"enabled": True}}}


def _dashboards(objects: list[Manifest], label: str = "grafana_dashboard") -> list[Manifest]:
    return [o for o in objects if o["kind"] == "ConfigMap"
            and label in o["metadata"].get("labels", {})]


def test_no_dashboards_by_default(render: Render) -> None:
    rendered = render()
    assert _dashboards(rendered.objects) == []
    assert not [o for o in rendered.all("ConfigMap")
                if o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"]


def test_one_configmap_per_dashboard_with_the_files_content(render: Render) -> None:
    assert len(DASHBOARD_FILES) == 2
    maps = _dashboards(render(ON).objects)
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "plugin-operator-dashboard-fleet", "plugin-operator-dashboard-plugin"]
    by_key = {}
    for configmap in maps:
        assert configmap["metadata"]["namespace"] == NAMESPACE
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in configmap["metadata"]
        (key,) = configmap["data"]
        by_key[key] = configmap["data"][key]
    assert sorted(by_key) == [p.name for p in DASHBOARD_FILES]
    for path in DASHBOARD_FILES:
        # The sidecar writes the value to a file Grafana loads: the JSON as generated.
        assert json.loads(by_key[path.name]) == json.loads(path.read_text())
        assert by_key[path.name] == path.read_text().rstrip("\n")


def test_label_namespace_and_annotations_can_be_chosen(render: Render) -> None:
    values = {"monitoring": {"dashboards": {
        "enabled": True, "label": "example.com/dashboard", "labelValue": 1,
        "namespace": "grafana", "annotations": {"grafana_folder": "Plugins"}}}}
    maps = _dashboards(render(values).objects, label="example.com/dashboard")
    assert len(maps) == 2
    assert _dashboards(render(values).objects) == []
    for configmap in maps:
        assert configmap["metadata"]["labels"]["example.com/dashboard"] == "1"
        assert configmap["metadata"]["namespace"] == "grafana"
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Plugins"}


@pytest.mark.parametrize(("dashboards", "fragment"), [
    ({"label": "not a label"}, "/monitoring/dashboards/label"),
    ({"labelValue": "no spaces"}, "/monitoring/dashboards/labelValue"),
    ({"namespace": "Grafana"}, "/monitoring/dashboards/namespace"),
    ({"folder": "x"}, "'folder' not allowed"),
])
def test_bad_dashboard_values_are_refused(render: Render, dashboards: dict[str, object],
                                          fragment: str) -> None:
    with pytest.raises(RenderError) as error:
        render({"monitoring": {"dashboards": {"enabled": True, **dashboards}}})
    assert fragment in str(error.value)


def test_lint_is_clean_with_dashboards(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(ON))
    result = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                      "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
