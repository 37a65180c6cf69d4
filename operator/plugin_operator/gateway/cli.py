"""``plugin-operator gateway``: Grafana's plugin HTTP API in front of plugin backends."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from plugin_operator import __version__
from plugin_operator.kube.reviews import Identity
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION

from .access import Gatekeeper, Permission
from .context import DEFAULT_GRAFANA_CONFIG, ContextDefaults
from .limits import Limits
from .routing import RoutingTable
from .server import Gateway, GatewayConfig
from .tracing import Tracing, TracingConfig, exporting_provider, otlp_url
from .watch import StaticWorldError, collections, load_static_world, watch_cluster

log = logging.getLogger("plugin_operator.gateway")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    parser.add_argument("--ports-file", type=Path,
                        help="write {\"http\": port} here once listening (for tests)")
    parser.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster or $KUBECONFIG)")
    parser.add_argument("--namespace", help="watch only this namespace (default: all)")
    parser.add_argument("--static-world", type=Path,
                        help="serve the Plugins, DataSourceInstances, Secrets and Pods in this "
                             "YAML file instead of watching a cluster (needs --anonymous "
                             "unless --kubeconfig is given for token checks)")
    parser.add_argument("--anonymous", action="store_true",
                        help="serve requests without a bearer token (no RBAC checks for them)")
    parser.add_argument("--pod-name", default=os.environ.get("POD_NAME", ""),
                        help="this gateway's pod (for sidecar plugins; default $POD_NAME)")
    parser.add_argument("--pod-namespace", default=os.environ.get("POD_NAMESPACE", ""),
                        help="this gateway's namespace (default $POD_NAMESPACE)")
    parser.add_argument("--max-in-flight-per-plugin", type=int, default=256,
                        help="requests in flight per plugin before callers get 503")
    parser.add_argument("--call-timeout", type=float, default=30.0,
                        help="deadline in seconds of each unary plugin call")
    parser.add_argument("--drain-seconds", type=float, default=20.0,
                        help="on SIGTERM, how long in-flight requests may take to finish")
    parser.add_argument("--auth-cache-seconds", type=float, default=10.0,
                        help="how long token and access decisions are reused")
    parser.add_argument("--auth-negative-cache-seconds", type=float, default=5.0,
                        help="how long a rejected token is refused without asking the "
                             "apiserver again (at most --auth-cache-seconds)")
    parser.add_argument("--quarantine-seconds", type=float, default=60.0,
                        help="how long a query that was in progress when its backend died is "
                             "refused instead of being replayed on another replica (0: off)")
    limits = Limits()
    for flag, name, text in (
            ("--max-query-body-bytes", "query_body_bytes", "bytes of a POST /api/ds/query body"),
            ("--max-resource-body-bytes", "resource_body_bytes",
             "bytes of a resource call's body"),
            ("--max-publish-body-bytes", "publish_body_bytes", "bytes of a publish's body"),
            ("--max-body-bytes-in-flight", "bodies_in_flight_bytes",
             "bytes of request bodies held at once by all requests (beyond: 503)"),
            ("--max-queries-per-request", "queries_per_request", "queries in one request"),
            ("--max-json-containers", "json_containers",
             "JSON objects and arrays in a query body, counted before parsing"),
            ("--max-data-points", "max_data_points", "maxDataPoints of one query"),
            ("--max-series-per-call", "series_per_call",
             "data frames one datasource call may return"),
            ("--max-values-per-call", "values_per_call",
             "values (rows x fields) one datasource call may return")):
        default = getattr(limits, name)
        parser.add_argument(flag, type=_positive, default=default, dest=f"limit_{name}",
                            metavar="N", help=f"at most N {text} (default {default})")
    parser.add_argument("--grafana-version", default=DEFAULT_GRAFANA_VERSION,
                        help="the Grafana version plugins are told (user agent)")
    parser.add_argument("--grafana-config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra PluginContext.grafanaConfig entries, e.g. GF_APP_URL=...")
    parser.add_argument("--asset-cache", type=Path,
                        default=Path("/tmp/plugin-operator-gateway-assets"),
                        help="where verified plugin frontends are extracted")
    parser.add_argument("--artifact-mirror-port", type=int, default=0,
                        help="keep a copy of verified plugin archives and serve them as "
                             "/artifacts/<sha256> on this port (0: off)")
    parser.add_argument("--artifact-mirror-dir", type=Path,
                        default=Path("/var/cache/plugin-operator-mirror"),
                        help="where the mirrored archives are kept")
    parser.add_argument("--artifact-mirror-max-bytes", type=_positive, default=1 << 30,
                        help="at most this many bytes of mirrored archives")
    parser.add_argument("--artifact-source", action="append", default=[], metavar="URL",
                        help="base URL the mirror copies archives from (the operator's cache, "
                             "then the gateway Service for a peer's copy); repeatable")
    parser.add_argument("--otlp-endpoint", default=_otlp_default(os.environ), metavar="ENDPOINT",
                        help="export the gateway's spans to this OTLP/gRPC collector: host:port "
                             "(plaintext, as Grafana names it) or an http:// or https:// URL "
                             "(default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then "
                             "$OTEL_EXPORTER_OTLP_ENDPOINT; empty: export nothing)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="uvloop (default; libuv's loop spends less CPU per request) or "
                        "Python's own asyncio loop")


def _otlp_default(environ: Mapping[str, str]) -> str:
    """Where the standard OpenTelemetry variables say spans go; nowhere when they say
    nothing or the SDK is disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    return (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()


def _tracing(args: argparse.Namespace) -> Tracing:
    if not args.otlp_endpoint:
        return Tracing()
    log.info("exporting spans to %s", otlp_url(args.otlp_endpoint))
    return Tracing(exporting_provider(TracingConfig(args.otlp_endpoint, args.pod_name),
                                      __version__))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(**{name.removeprefix("limit_"): value for name, value in vars(args).items()
                     if name.startswith("limit_")})


def _grafana_config(pairs: list[str]) -> dict[str, str]:
    config = dict(DEFAULT_GRAFANA_CONFIG)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--grafana-config {pair!r}: expected KEY=VALUE")
        config[key] = value
    return config


async def _serve(args: argparse.Namespace) -> int:
    table = RoutingTable()
    api: Any = None
    if args.static_world is None or args.kubeconfig:
        from plugin_operator.kube.client import api_client

        api = await api_client(args.kubeconfig)
    gatekeeper = _gatekeeper(api, args)
    config = GatewayConfig(
        max_in_flight_per_plugin=args.max_in_flight_per_plugin,
        call_timeout_seconds=args.call_timeout,
        context=ContextDefaults(args.grafana_version, _grafana_config(args.grafana_config)),
        asset_cache_dir=args.asset_cache, limits=_limits(args),
        quarantine_seconds=args.quarantine_seconds)
    gateway = Gateway(table, gatekeeper, config, tracing=_tracing(args))
    watcher: asyncio.Task[None] | None = None
    if args.static_world is not None:
        load_static_world(args.static_world, table, args.pod_name)
        gateway.synced = True
    else:
        watcher = asyncio.create_task(watch_cluster(
            api, gateway, collections(args.namespace, args.pod_name, args.pod_namespace)))
    mirror_runner: web.AppRunner | None = None
    if args.artifact_mirror_port:
        from .artifact_mirror import ArtifactMirror, MirroredAssetStore, serve_mirror

        mirror = ArtifactMirror(args.artifact_mirror_dir, args.artifact_mirror_max_bytes,
                                args.artifact_source, table)
        gateway.assets = MirroredAssetStore(args.asset_cache, mirror)
        mirror_task = asyncio.create_task(mirror.run())
        mirror_runner = await serve_mirror(mirror, args.bind, args.artifact_mirror_port)
    runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.bind, args.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    if args.ports_file:
        args.ports_file.write_text(json.dumps({"http": port}))
    log.info("gateway listening on %s:%s", args.bind, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if watcher is not None:
        waiters.append(watcher)
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    failed = watcher is not None and watcher.done() and watcher.exception() is not None
    # Drain: stop accepting, let calls in flight finish, then close everything.
    gateway.draining = True
    await site.stop()
    if not await gateway.drain(args.drain_seconds):
        log.warning("requests still in flight after %.0fs; closing anyway", args.drain_seconds)
    await runner.cleanup()
    if mirror_runner is not None:
        mirror_task.cancel()
        await mirror_runner.cleanup()
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
    await gateway.upstream.close()
    await asyncio.to_thread(gateway.tracing.shutdown)  # the spans still buffered
    if api is not None:
        await api.close()
    return 1 if failed else 0


def _gatekeeper(api: Any, args: argparse.Namespace) -> Gatekeeper:
    if api is None:
        if not args.anonymous:
            raise SystemExit("--static-world without --kubeconfig cannot check tokens: add "
                             "--anonymous (trusted, local use) or --kubeconfig")
        return Gatekeeper(None, None, anonymous=True, ttl_seconds=args.auth_cache_seconds,
                          negative_ttl_seconds=args.auth_negative_cache_seconds)
    from plugin_operator.kube import reviews

    async def review_token(token: str) -> Identity | None:
        return await reviews.review_token(api, token)

    async def review_access(identity: Identity, permission: Permission) -> bool:
        return await reviews.review_access(
            api, identity, verb=permission.verb, group=permission.group,
            resource=permission.resource, namespace=permission.namespace,
            name=permission.name, subresource=permission.subresource)

    return Gatekeeper(review_token, review_access, anonymous=args.anonymous,
                      ttl_seconds=args.auth_cache_seconds,
                      negative_ttl_seconds=args.auth_negative_cache_seconds)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise SystemExit("--event-loop uvloop: the uvloop package is not installed "
                         "(pip install uvloop), or pass --event-loop asyncio") from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.event_loop)) as runner:
            return runner.run(_serve(args))
    except StaticWorldError as exc:
        log.error("%s", exc)
        return 2
