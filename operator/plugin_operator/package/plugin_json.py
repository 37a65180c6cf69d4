"""plugin.json: the typed model, validation, and the backend executable's path.

Follows Grafana's loader: an unknown ``type`` or a missing ``id`` is a hard error,
``dependencies`` and ``includes`` get Grafana's defaults, and the backend binary is
``<executable>_<goos>_<goarch>`` beside plugin.json with no fallback search.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLUGIN_JSON = "plugin.json"
PLUGIN_TYPES = frozenset({"datasource", "panel", "app", "renderer", "secretsmanager"})
# The executable names Grafana hard-codes for types whose plugin.json does not name one.
_FIXED_EXECUTABLES = {"renderer": "plugin_start", "secretsmanager": "secrets_plugin_start"}
# platform.machine() spellings mapped to Go's GOARCH, which names the binaries.
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}


class PluginJsonError(ValueError):
    """plugin.json is missing, unreadable or invalid. ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PluginDependency:
    id: str
    type: str
    name: str


@dataclass(frozen=True)
class PluginInclude:
    name: str
    type: str
    path: str = ""
    role: str = "Viewer"


@dataclass(frozen=True)
class PluginJson:
    """The facts of plugin.json that decide how a plugin is verified and run."""

    id: str
    type: str
    name: str
    version: str
    backend: bool = False
    executable: str = ""
    alerting: bool = False
    streaming: bool = False
    grafana_dependency: str = ""
    grafana_version: str = "*"
    dependencies: tuple[PluginDependency, ...] = ()
    includes: tuple[PluginInclude, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def executable_name(self) -> str:
        """The base name Grafana runs, before the ``_<os>_<arch>`` suffix ('' if none)."""
        return _FIXED_EXECUTABLES.get(self.type, self.executable)

    def executable_path(self, plugin_dir: Path, goos: str | None = None,
                        goarch: str | None = None) -> Path:
        """Where Grafana expects the backend binary for the platform (default: this one)."""
        if not self.executable_name:
            raise PluginJsonError(
                f"plugin {self.id!r} declares no backend executable; set \"executable\" "
                "in plugin.json to the binary's base name (e.g. gpx_myplugin)",
                field="executable",
            )
        goos = (goos or platform.system()).lower()
        goarch = goarch or go_arch()
        suffix = ".exe" if goos == "windows" else ""
        return plugin_dir / f"{self.executable_name}_{goos}_{goarch}{suffix}"


def go_arch(machine: str | None = None) -> str:
    """Go's GOARCH for a ``platform.machine()`` value."""
    machine = (machine or platform.machine()).lower()
    return _GOARCH.get(machine, machine)


def _str(data: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PluginJsonError(f"{where}{key} must be a string, not {type(value).__name__}",
                              field=f"{where}{key}")
    return value


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise PluginJsonError(f"{key} must be true or false, not {value!r}", field=key)
    return value


def _object(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise PluginJsonError(f"{where}{key} must be an object", field=f"{where}{key}")
    return value


def _list(data: Mapping[str, Any], key: str, where: str = "") -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise PluginJsonError(f"{where}{key} must be a list", field=f"{where}{key}")
    return value


def parse_plugin_json(data: Any) -> PluginJson:
    """Validate decoded plugin.json content into a :class:`PluginJson`."""
    if not isinstance(data, Mapping):
        raise PluginJsonError("plugin.json must hold a JSON object")
    plugin_id = _str(data, "id", "")
    if not plugin_id:
        raise PluginJsonError("plugin.json has no id; set \"id\" to the plugin's id "
                              "(e.g. myorg-example-datasource)", field="id")
    plugin_type = _str(data, "type", "")
    if plugin_type not in PLUGIN_TYPES:
        raise PluginJsonError(
            f"plugin.json type {plugin_type!r} is not one of {', '.join(sorted(PLUGIN_TYPES))}",
            field="type")
    info = _object(data, "info")
    deps = _object(data, "dependencies")
    dependencies = []
    for index, dep in enumerate(_list(deps, "plugins", "dependencies.")):
        where = f"dependencies.plugins[{index}]."
        if not isinstance(dep, Mapping):
            raise PluginJsonError(f"{where[:-1]} must be an object", field=where[:-1])
        dependencies.append(PluginDependency(_str(dep, "id", where), _str(dep, "type", where),
                                             _str(dep, "name", where)))
    includes = []
    for index, inc in enumerate(_list(data, "includes")):
        where = f"includes[{index}]."
        if not isinstance(inc, Mapping):
            raise PluginJsonError(f"{where[:-1]} must be an object", field=where[:-1])
        includes.append(PluginInclude(name=_str(inc, "name", where), type=_str(inc, "type", where),
                                      path=_str(inc, "path", where),
                                      role=_str(inc, "role", where) or "Viewer"))
    # A backend without an executable is not a plugin.json error in Grafana (it loads the
    # plugin and fails to start it), so it is reported by executable_path, not here.
    backend = _bool(data, "backend")
    executable = _str(data, "executable", "")
    return PluginJson(
        id=plugin_id,
        type=plugin_type,
        name=_str(data, "name", ""),
        version=_str(info, "version", "info."),
        backend=backend,
        executable=executable,
        alerting=_bool(data, "alerting"),
        streaming=_bool(data, "streaming"),
        grafana_dependency=_str(deps, "grafanaDependency", "dependencies."),
        grafana_version=_str(deps, "grafanaVersion", "dependencies.") or "*",
        dependencies=tuple(dependencies),
        includes=tuple(includes),
        raw=dict(data),
    )


def load_plugin_json(plugin_dir: Path) -> PluginJson:
    """Read and validate ``<plugin_dir>/plugin.json``."""
    path = plugin_dir / PLUGIN_JSON
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise PluginJsonError(f"no plugin.json in {plugin_dir}; a plugin directory holds "
                              "plugin.json at its top") from None
    except OSError as exc:
        raise PluginJsonError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PluginJsonError(f"{path} is not valid JSON: {exc}") from exc
    return parse_plugin_json(data)


def resolve_executable(plugin_dir: Path, plugin: PluginJson, goos: str | None = None,
                       goarch: str | None = None) -> Path:
    """The backend binary's path, checked to exist and be executable, like Grafana's start."""
    path = plugin.executable_path(plugin_dir, goos, goarch)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise PluginJsonError(
            f"backend executable {path.name} not found in {plugin_dir}; Grafana runs "
            f"<executable>_<os>_<arch> (here {path.name}), so build the plugin for this "
            "platform", field="executable") from None
    if not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
        raise PluginJsonError(f"backend executable {path} is not an executable file; "
                              "chmod 0755 it", field="executable")
    return path

