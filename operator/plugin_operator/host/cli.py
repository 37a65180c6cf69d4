"""``plugin-operator host <plugin-dir>``: the entrypoint of every plugin container."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from plugin_operator.host.front import DEFAULT_FRONT, FRONT_ENV
from plugin_operator.host.runner import Host, HostConfig
from plugin_operator.host.supervision import RestartPolicy
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
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
    parser.add_argument("--grafana-version", default=DEFAULT_GRAFANA_VERSION,
                        help="GF_VERSION for the plugin")
    parser.add_argument("--setting", type=_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="plugin setting, passed as GF_PLUGIN_<KEY>")
    parser.add_argument("--socket-dir", help="PLUGIN_UNIX_SOCKET_DIR for the plugin's socket")
    parser.add_argument("--ports-file", type=Path,
                        help="write {\"grpc\": port, \"http\": port, \"pid\": pid, "
                             "\"front_pid\": pid, \"plugin\": its address[, \"attach\": "
                             "port]} here when ready")
    parser.add_argument("--front", type=Path,
                        help="the plugin-front binary that serves the gRPC ports (default: "
                             f"${FRONT_ENV}, else {DEFAULT_FRONT})")
    parser.add_argument("--attach-port", type=int,
                        help="also serve the attach port here: each call balanced over the "
                             "Plugin's ready replicas (--peers); 0: any free port; "
                             "default: none")
    parser.add_argument("--attach-bind", help="address for the attach port (default: "
                                              "--grpc-bind)")
    parser.add_argument("--peers", help="host:port (comma-separated) whose addresses are the "
                                        "replicas, e.g. a headless Service of the ready "
                                        "backend pods; peers are dialled on that port")
    parser.add_argument("--pod-ip", default=os.environ.get("POD_IP") or None,
                        help="this pod's IP, replaced by the local plugin among the peers "
                             "(default: $POD_IP)")
    parser.add_argument("--drain-delay", type=float, default=2.0,
                        help="seconds to keep serving after SIGTERM with health NOT_SERVING, "
                             "so Services stop sending calls first (default 2)")
    parser.add_argument("--crash-loop-exits", type=int, default=RestartPolicy.give_up_after,
                        help="the host restarts the plugin when it exits, until it exits this "
                             "many times within a minute; then the host exits and the kubelet "
                             "takes over (1: exit with the plugin; default %(default)s)")
    parser.add_argument("--report-url",
                        help="post a report here after each plugin restart the host does "
                             "itself (the operator's /reports/pods/<namespace>/<pod>)")
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
                        socket_dir=args.socket_dir, ports_file=args.ports_file,
                        front=args.front, attach_bind=args.attach_bind,
                        attach_port=args.attach_port, peers=args.peers, pod_ip=args.pod_ip,
                        drain_delay=args.drain_delay, report_url=args.report_url,
                        restart_policy=RestartPolicy(give_up_after=max(1, args.crash_loop_exits)))
    return asyncio.run(Host(config).run())
