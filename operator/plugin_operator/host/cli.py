"""``plugin-operator host <plugin-dir>``: the entrypoint of every plugin container."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from plugin_operator.host.runner import Host, HostConfig
from plugin_operator.sdk.log import HclogJsonFormatter


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--setting {text!r}: use KEY=VALUE "
                                         "(becomes GF_PLUGIN_<KEY> like [plugin.<id>] in Grafana)")
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plugin_dir", type=Path, help="plugin directory holding plugin.json")
    parser.add_argument("--grpc-bind", default="0.0.0.0", help="address for the plugin's gRPC")
    parser.add_argument("--grpc-port", type=int, default=10000,
                        help="port for the plugin's gRPC (0: any free port; default 10000)")
    parser.add_argument("--http-bind", default="0.0.0.0", help="address for /metrics etc.")
    parser.add_argument("--http-port", type=int, default=9100,
                        help="port for /metrics, /healthz, /readyz (0: any; default 9100)")
    parser.add_argument("--handshake-timeout", type=float, default=60.0,
                        help="seconds to wait for the handshake line (Grafana: 60)")
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"),
                        help="where to write why the plugin died (Kubernetes reads it)")
    parser.add_argument("--grafana-version", default="12.0.0", help="GF_VERSION for the plugin")
    parser.add_argument("--setting", type=_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="plugin setting, passed as GF_PLUGIN_<KEY>")
    parser.add_argument("--socket-dir", help="PLUGIN_UNIX_SOCKET_DIR for the plugin's socket")
    parser.add_argument("--ports-file", type=Path,
                        help="write {\"grpc\": port, \"http\": port, \"pid\": pid} here when ready")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(HclogJsonFormatter())
    logging.basicConfig(level=args.log_level, handlers=[handler], force=True)
    config = HostConfig(plugin_dir=args.plugin_dir.resolve(), grpc_bind=args.grpc_bind,
                        grpc_port=args.grpc_port, http_bind=args.http_bind,
                        http_port=args.http_port, handshake_timeout=args.handshake_timeout,
                        termination_log=args.termination_log,
                        grafana_version=args.grafana_version, settings=dict(args.setting),
                        socket_dir=args.socket_dir, ports_file=args.ports_file)
    return asyncio.run(Host(config).run())
