"""Finding plugins on disk the way Grafana's plugin finder does.

Grafana (pkg/plugins/manager/sources, ``DirAsLocalSources`` and ``LocalSource.Discover``)
reads its plugins folder entry by entry: each sub-folder or symlink is a source of its own.
Inside a source it walks every folder, following symlinked folders too, collects each
plugin.json and skips node_modules. A path reached through a symlink is reported resolved
(pkg/util ``Walk``), so a plugin's folder is the real folder the link leads to, and that is
the folder its signature must cover. Following a link to a folder the walk has already
followed through a link counts as a symlink loop and fails the whole source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from plugin_operator.package.plugin_json import PLUGIN_JSON, PluginJson, load_plugin_json

_SKIPPED_FOLDER = "node_modules"


class PluginDiscoveryError(ValueError):
    """Grafana's finder would give up on this folder, so no plugin in it would load."""


@dataclass(frozen=True)
class FoundPlugin:
    """A plugin as the finder met it.

    ``directory`` is the path it was reached by, through any links (what people recognise);
    ``real_directory`` has the links resolved, as Grafana records the plugin's folder.
    """

    directory: Path
    real_directory: Path
    plugin: PluginJson


def plugin_sources(plugins_folder: Path) -> list[Path]:
    """Each sub-folder of a plugins folder, or symlink to one, in name order."""
    try:
        entries = sorted(plugins_folder.iterdir(), key=lambda entry: entry.name)
    except OSError as exc:
        raise PluginDiscoveryError(f"cannot list {plugins_folder}: {exc.strerror}") from None
    # A link whose target is gone is skipped, as Grafana skips a source that does not exist.
    return [entry for entry in entries if entry.is_dir()]


def find_plugins(source: Path) -> list[FoundPlugin]:
    """Every plugin under ``source`` (``source`` itself included), in the order met.

    Each plugin folder appears once, under the first path that reached it. An unreadable or
    invalid plugin.json raises ``PluginJsonError``: an operator must not half-load a package.
    """
    walk = _Walk()
    real_source = Path(os.path.realpath(source))
    if source.is_symlink():
        walk.followed.add(real_source)
    walk.visit(source, real_source)
    return walk.found


def find_plugins_in(folder: Path) -> list[FoundPlugin]:
    """The plugins Grafana would find given ``folder``.

    A folder with plugin.json at its top is one source, as a ``[plugin.<id>] path`` setting
    is; any other folder is read like Grafana's plugins folder, one source per entry.
    """
    sources = [folder] if (folder / PLUGIN_JSON).is_file() else plugin_sources(folder)
    found: list[FoundPlugin] = []
    seen: set[Path] = set()
    for source in sources:
        for item in find_plugins(source):
            # The same folder reached from two sources is one plugin twice over; Grafana
            # loads the first and skips the second as a duplicate id.
            if item.real_directory not in seen:
                seen.add(item.real_directory)
                found.append(item)
    if not found:
        raise PluginDiscoveryError(
            f"no plugin.json in {folder} or in any folder under it; give a plugin folder, a "
            "folder of plugins (like Grafana's plugins folder), an archive or a URL")
    return found


class _Walk:
    def __init__(self) -> None:
        self.found: list[FoundPlugin] = []
        self.seen: set[Path] = set()
        self.followed: set[Path] = set()

    def visit(self, shown: Path, real: Path) -> None:
        try:
            entries = sorted(os.scandir(real), key=lambda entry: entry.name)
        except PermissionError:
            return  # Grafana logs an unreadable folder and walks on
        except OSError as exc:
            raise PluginDiscoveryError(f"cannot list {shown}: {exc.strerror}") from None
        if real not in self.seen and any(e.name == PLUGIN_JSON and not _is_dir(e)
                                         for e in entries):
            self.seen.add(real)
            self.found.append(FoundPlugin(shown, real, load_plugin_json(shown)))
        for entry in entries:
            if entry.name == _SKIPPED_FOLDER or not _is_dir(entry):
                continue
            if not entry.is_symlink():
                self.visit(shown / entry.name, real / entry.name)
                continue
            target = Path(os.path.realpath(entry.path))
            if target in self.followed:
                raise PluginDiscoveryError(
                    f"{shown / entry.name} links to {target}, which the search for plugins "
                    "already followed a link to; Grafana takes this for a symlink loop and "
                    "loads nothing from this folder. Remove the extra link")
            self.followed.add(target)
            self.visit(shown / entry.name, target)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one; a dangling link is neither (the signature check reports
    it)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
