"""The chart lints clean with real Helm and ships exactly the repository's CRDs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import yaml

from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import CHART, KUBE_VERSION, REPO, Helm

CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))


def _lint(helm: Helm, tmp: Path, values: dict[str, object] | None = None) -> str:
    values_file = tmp / "lint-values.json"
    values_file.write_text(json.dumps(values or {}))
    result = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                      "--values", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_lint_is_clean_with_defaults(helm: Helm, tmp_path: Path) -> None:
    output = _lint(helm, tmp_path)
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output
    assert "1 chart(s) linted, 0 chart(s) failed" in output


def test_lint_is_clean_cluster_wide(helm: Helm, tmp_path: Path) -> None:
    output = _lint(helm, tmp_path, {"plugins": {"namespaces": []},
                                    "networkPolicy": {"namespaces": ["team-a"]}})
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output


def test_the_charts_crds_are_the_repositorys(helm: Helm, render: Render) -> None:
    # One source of truth: the chart's crds/ is a link to the repository's crds/.
    assert (CHART / "crds").resolve() == (REPO / "crds").resolve()
    rendered = render(include_crds=True).all("CustomResourceDefinition")
    expected = [yaml.safe_load(p.read_text()) for p in CRD_FILES]
    key = lambda crd: crd["metadata"]["name"]  # noqa: E731
    assert sorted(rendered, key=key) == sorted(expected, key=key)


def test_the_packaged_chart_holds_the_crd_files_byte_for_byte(helm: Helm, tmp_path: Path) -> None:
    result = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("plugin-operator-*.tgz")
    with tarfile.open(archive) as tar:
        packaged = {Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in tar.getmembers() if m.name.startswith("plugin-operator/crds/")}
    assert packaged == {p.name: p.read_bytes() for p in CRD_FILES}


def test_crds_are_not_templates(render: Render) -> None:
    # Helm installs crds/ before anything else and never upgrades or deletes them; a CRD in
    # templates/ would be deleted (with every Plugin) by `helm uninstall`.
    assert render().all("CustomResourceDefinition") == []


def test_default_image_tag_is_the_version_hack_image_builds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'\nversion = "{chart["appVersion"]}"\n' in pyproject
