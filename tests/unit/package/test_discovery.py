"""Finding plugins as Grafana's finder does: symlinked folders followed and resolved, loops
refused, a plugins folder read one entry at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from plugin_operator.package.discovery import (
    PluginDiscoveryError,
    find_plugins,
    find_plugins_in,
    plugin_sources,
)


def _plugin(folder: Path, plugin_id: str = "acme-test-datasource") -> Path:
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(json.dumps(
        {"id": plugin_id, "type": "datasource", "info": {"version": "1.0.0"}}))
    return folder


def test_a_plugin_reached_through_a_link_is_recorded_at_the_real_folder(tmp_path: Path) -> None:
    real = _plugin(tmp_path / "store" / "acme")
    (tmp_path / "link").symlink_to(real)

    [found] = find_plugins(tmp_path / "link")

    assert found.directory == tmp_path / "link"
    assert found.real_directory == Path(os.path.realpath(real))
    assert found.plugin.id == "acme-test-datasource"


def test_symlinked_folders_inside_a_source_are_followed(tmp_path: Path) -> None:
    app = _plugin(tmp_path / "app", "acme-test-app")
    _plugin(tmp_path / "elsewhere" / "panel", "acme-test-panel")
    (app / "panel").symlink_to(Path("..") / "elsewhere" / "panel")

    found = find_plugins(app)

    assert [item.plugin.id for item in found] == ["acme-test-app", "acme-test-panel"]
    assert found[1].directory == app / "panel"
    assert found[1].real_directory == Path(os.path.realpath(tmp_path / "elsewhere" / "panel"))


def test_a_folder_reached_twice_is_listed_once_under_the_first_path(tmp_path: Path) -> None:
    app = _plugin(tmp_path / "app", "acme-test-app")
    _plugin(app / "vendor" / "panel", "acme-test-panel")
    (app / "a-panel").symlink_to(Path("vendor") / "panel")

    found = find_plugins(app)

    assert [item.directory for item in found] == [app, app / "a-panel"]


def test_node_modules_is_skipped(tmp_path: Path) -> None:
    app = _plugin(tmp_path / "app", "acme-test-app")
    _plugin(app / "node_modules" / "dep", "acme-dep-panel")

    assert [item.plugin.id for item in find_plugins(app)] == ["acme-test-app"]


@pytest.mark.parametrize("links", [
    {"images": "img", "pictures": "img"},  # a second link to a followed folder
    {"again": "."},  # a link back to the plugin folder: followed once, then met again
])
def test_links_grafana_takes_for_a_loop_are_refused(tmp_path: Path, links: dict[str, str]) -> None:
    app = _plugin(tmp_path / "app")
    (app / "img").mkdir()
    for name, target in links.items():
        (app / name).symlink_to(target)

    with pytest.raises(PluginDiscoveryError, match="symlink loop"):
        find_plugins(app)


def test_a_dangling_link_is_left_to_the_signature_check(tmp_path: Path) -> None:
    app = _plugin(tmp_path / "app")
    (app / "gone").symlink_to(tmp_path / "nowhere")

    assert [item.directory for item in find_plugins(app)] == [app]


def test_plugins_folder_sources_are_folders_and_links_to_folders(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    _plugin(plugins / "b-real")
    _plugin(tmp_path / "store" / "a")
    (plugins / "a-link").symlink_to(tmp_path / "store" / "a")
    (plugins / "README.md").write_text("not a source")
    (plugins / "gone").symlink_to(tmp_path / "nowhere")

    assert plugin_sources(plugins) == [plugins / "a-link", plugins / "b-real"]


def test_a_folder_of_plugins_is_read_like_grafanas_plugins_folder(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    _plugin(plugins / "real", "acme-real-datasource")
    _plugin(tmp_path / "store" / "linked", "acme-linked-datasource")
    (plugins / "linked").symlink_to(tmp_path / "store" / "linked")
    (plugins / "linked-again").symlink_to(tmp_path / "store" / "linked")

    found = find_plugins_in(plugins)

    # Two links to one folder are one plugin; Grafana skips the second as a duplicate id.
    assert [(item.directory.name, item.plugin.id) for item in found] == [
        ("linked", "acme-linked-datasource"), ("real", "acme-real-datasource")]


def test_a_plugin_folder_is_its_own_source(tmp_path: Path) -> None:
    app = _plugin(tmp_path / "app", "acme-test-app")
    _plugin(app / "panel", "acme-test-panel")

    assert [item.plugin.id for item in find_plugins_in(app)] == ["acme-test-app",
                                                                "acme-test-panel"]


def test_a_folder_without_any_plugin_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)

    with pytest.raises(PluginDiscoveryError, match=r"no plugin\.json in .*empty"):
        find_plugins_in(tmp_path / "empty")
