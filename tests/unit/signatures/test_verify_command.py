"""``plugin-operator verify`` run in-process: symlinked plugin folders, the Grafana version a
plugin is made for, and the dependencies it declares."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.cli import main
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.signatures.signing import sign_plugin

MakePlugin = Callable[..., Path]
APP_URL = "http://localhost:3000/"


@pytest.fixture
def key_file(tmp_path: Path, signing_key: Any) -> Path:
    path = tmp_path / "signer.pub.asc"
    path.write_text(str(signing_key.extract_certificate()))
    return path


def _signed(make_plugin: MakePlugin, key: Any, name: str = "store", **plugin_json: Any) -> Path:
    """A plugin signed with the test key, after merging ``plugin_json`` into its plugin.json."""
    plugin = make_plugin(name=name)
    data = json.loads((plugin / "plugin.json").read_text())
    (plugin / "plugin.json").write_text(json.dumps({**data, **plugin_json}))
    sign_plugin(plugin, key, root_urls=[APP_URL])
    return plugin


def _verify(capsys: pytest.CaptureFixture[str], target: Path, key_file: Path,
            *options: str) -> tuple[int, str]:
    code = main(["verify", str(target), "--trusted-key", str(key_file), *options])
    return code, capsys.readouterr().out


def _verify_json(capsys: pytest.CaptureFixture[str], target: Path, key_file: Path,
                 *options: str) -> tuple[int, dict[str, Any]]:
    code, out = _verify(capsys, target, key_file, "--json", *options)
    return code, json.loads(out)


def test_a_symlink_to_a_signed_plugin_verifies(make_plugin: MakePlugin, signing_key: Any,
                                               key_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _signed(make_plugin, signing_key)
    (tmp_path / "link").symlink_to(plugin)

    code, report = _verify_json(capsys, tmp_path / "link", key_file)

    assert code == 0, report
    assert report["plugins"][0]["signature"]["status"] == "valid"


def test_a_folder_holding_a_symlinked_signed_plugin_verifies(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    plugin = make_plugin(name="store")
    (plugin / "logo-link.svg").symlink_to(Path("img") / "logo.svg")  # stays inside: counts
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "acme-test-datasource").symlink_to(Path("..") / "store")

    code, report = _verify_json(capsys, tmp_path / "plugins", key_file)

    assert code == 0, report
    [verdict] = report["plugins"]
    assert (verdict["path"], verdict["signature"]["status"]) == ("acme-test-datasource",
                                                                 "valid")


def test_a_folder_of_plugins_reports_each_and_refuses_if_one_is_refused(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _signed(make_plugin, signing_key)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "linked").symlink_to(tmp_path / "store")
    make_plugin(plugin_id="acme-unsigned-datasource", name="plugins/unsigned")

    code, report = _verify_json(capsys, plugins, key_file)

    assert code == 1
    assert [(v["path"], v["allowed"]) for v in report["plugins"]] == [("linked", True),
                                                                      ("unsigned", False)]
    allowed, _ = _verify_json(capsys, plugins, key_file, "--allow-unsigned",
                              "acme-unsigned-datasource")
    assert allowed == 0


def test_links_grafana_takes_for_a_loop_make_the_folder_unreadable(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    plugin = make_plugin(name="store")
    (plugin / "images").symlink_to("img")
    (plugin / "pictures").symlink_to("img")
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])

    code = main(["verify", str(plugin), "--trusted-key", str(key_file)])

    assert code == 2
    assert "symlink loop" in capsys.readouterr().err


def test_a_nested_plugin_linked_from_outside_is_a_plugin_of_its_own(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = _signed(make_plugin, signing_key, name="other", id="acme-other-datasource")
    app = _signed(make_plugin, signing_key, name="app")
    (app / "other").symlink_to(os.path.relpath(other, app))

    code, report = _verify_json(capsys, app, key_file)

    # Grafana's finder follows the link and finds the other plugin at its real folder, which
    # is not inside the app; the app's own file walk fails on the link that leaves it.
    assert code == 1
    by_id = {v["pluginId"]: v for v in report["plugins"]}
    assert by_id["acme-test-datasource"]["signature"]["status"] == "invalid"
    assert "other" in by_id["acme-test-datasource"]["signature"]["reason"]
    assert by_id["acme-other-datasource"]["parentId"] is None
    assert by_id["acme-other-datasource"]["signature"]["status"] == "valid"


def test_a_plugin_for_a_newer_grafana_is_a_warning_by_default(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _signed(make_plugin, signing_key, dependencies={"grafanaDependency": ">=99.0.0"})

    code, out = _verify(capsys, plugin, key_file)

    assert code == 0
    assert ("warning:   acme-test-datasource v1.2.3 is not compatible with your Grafana "
            f"version: {DEFAULT_GRAFANA_VERSION}") in out


def test_refusing_plugins_for_another_grafana(make_plugin: MakePlugin, signing_key: Any,
                                              key_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _signed(make_plugin, signing_key, dependencies={"grafanaDependency": ">=13.0.0"})

    code, report = _verify_json(capsys, plugin, key_file, "--incompatible-grafana", "refuse",
                                "--grafana-version", "12.4.1")
    newer, _ = _verify_json(capsys, plugin, key_file, "--incompatible-grafana", "refuse",
                            "--grafana-version", "13.0.2")

    assert code == 1
    [verdict] = report["plugins"]
    assert verdict["errorCode"] == "plugin.versionNotCompatible"
    assert "not compatible with your Grafana version: 12.4.1" in verdict["message"]
    assert verdict["grafanaCompatibility"] == {
        "grafanaVersion": "12.4.1", "grafanaDependency": ">=13.0.0", "compatible": False,
        "message": verdict["grafanaCompatibility"]["message"]}
    assert newer == 0


def test_a_grafana_version_that_is_not_a_version_is_refused(
        make_plugin: MakePlugin, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify", str(make_plugin()), "--grafana-version", "latest"])

    assert exited.value.code == 2
    assert "--grafana-version: 'latest' is not a version" in capsys.readouterr().err


def test_dependencies_are_listed_as_grafana_lists_them(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    dependencies = {"grafanaDependency": ">=10.4.0", "plugins": [
        {"id": "acme-helper-app", "type": "app", "name": "Acme Helper"},
        {"id": "acme-map-panel", "type": "panel", "name": ""}]}
    plugin = _signed(make_plugin, signing_key, dependencies=dependencies)

    _, out = _verify(capsys, plugin, key_file)
    _, report = _verify_json(capsys, plugin, key_file)

    assert ("  dependencies:\n    Grafana >=10.4.0\n    Acme Helper (app acme-helper-app)\n"
            "    acme-map-panel (panel acme-map-panel)\n") in out
    assert report["plugins"][0]["dependencies"] == {**dependencies, "grafanaVersion": "*"}


def test_no_dependencies_no_list(make_plugin: MakePlugin, signing_key: Any, key_file: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _verify(capsys, _signed(make_plugin, signing_key), key_file)

    assert "dependencies" not in out


def test_nested_plugins_follow_their_parent_in_the_report(
        make_plugin: MakePlugin, signing_key: Any, key_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plugins").mkdir()
    app = make_plugin(name="plugins/a")
    (app / "panel").mkdir()
    (app / "panel" / "plugin.json").write_text(
        '{"id": "acme-child-panel", "type": "panel", "name": "Child", "info": {}}')
    sign_plugin(app, signing_key, root_urls=[APP_URL])
    _signed(make_plugin, signing_key, name="plugins/b", id="acme-other-datasource")

    code, report = _verify_json(capsys, tmp_path / "plugins", key_file)

    assert code == 0, report
    assert [(v["path"], v["parentId"]) for v in report["plugins"]] == [
        ("a", None), ("a/panel", "acme-test-datasource"), ("b", None)]
