"""The host side of the go-plugin handshake: the child's environment and its handshake line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAGIC_COOKIE_KEY = "grafana_plugin_type"
MAGIC_COOKIE_VALUE = "datasource"
PROTOCOL_VERSIONS = (2,)
_SETTING_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class HandshakeError(RuntimeError):
    """The plugin's handshake line is missing or not one Grafana accepts."""


@dataclass(frozen=True)
class Handshake:
    core_version: int
    app_version: int
    network: str
    address: str
    protocol: str
    server_cert: str = ""


def parse_handshake_line(line: str) -> Handshake:
    """Validate ``1|2|unix|/tmp/plugin123|grpc|`` as go-plugin's client does for Grafana."""
    text = line.strip()
    parts = text.split("|")
    if len(parts) < 4:
        raise HandshakeError(f"unrecognized handshake line {text[:200]!r}: expected "
                             "CORE|APP|NETWORK|ADDRESS|grpc (is this a Grafana backend plugin?)")
    if parts[0] != "1":
        raise HandshakeError(f"handshake core protocol {parts[0]!r} is not 1; the plugin was "
                             "built with an incompatible go-plugin")
    if not parts[1].isdigit() or int(parts[1]) not in PROTOCOL_VERSIONS:
        raise HandshakeError(f"plugin protocol version {parts[1]!r} not supported (Grafana "
                             f"speaks {', '.join(map(str, PROTOCOL_VERSIONS))}); rebuild the "
                             "plugin with a current grafana-plugin-sdk-go")
    if parts[2] not in ("unix", "tcp"):
        raise HandshakeError(f"handshake network {parts[2]!r} is neither unix nor tcp")
    if not parts[3]:
        raise HandshakeError("handshake line has an empty address")
    protocol = parts[4] if len(parts) > 4 and parts[4] else "netrpc"
    if protocol != "grpc":
        raise HandshakeError(f"plugin speaks {protocol!r}; Grafana only allows grpc")
    cert = parts[5] if len(parts) > 5 and len(parts[5]) > 50 else ""
    return Handshake(1, int(parts[1]), parts[2], parts[3], protocol, cert)


def setting_env_name(key: str) -> str:
    """``[plugin.<id>] key=value`` becomes ``GF_PLUGIN_<UPPER(key)>``."""
    if not _SETTING_KEY.match(key):
        raise ValueError(f"plugin setting name {key!r} may only hold letters, digits, _ . -")
    return f"GF_PLUGIN_{key.upper()}"


def plugin_environment(host_env: Mapping[str, str], *, grafana_version: str,
                       settings: Mapping[str, str], extra: Mapping[str, str] | None = None,
                       socket_dir: str | None = None) -> dict[str, str]:
    """The child's environment in go-plugin's order (later entries win, like Go's exec).

    Grafana's list (GF_VERSION, GF_PLUGIN_* settings), then the host environment, then the
    handshake variables. ``path`` and ``id`` settings are skipped as Grafana does.
    """
    env: dict[str, str] = {"GF_VERSION": grafana_version}
    for key, value in settings.items():
        if key.lower() not in ("path", "id"):
            env[setting_env_name(key)] = value
    env.update(extra or {})
    env.update(host_env)
    if socket_dir:
        env["PLUGIN_UNIX_SOCKET_DIR"] = socket_dir
    env.update({MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_MIN_PORT": "10000",
                "PLUGIN_MAX_PORT": "25000",
                "PLUGIN_PROTOCOL_VERSIONS": ",".join(map(str, PROTOCOL_VERSIONS))})
    return env
