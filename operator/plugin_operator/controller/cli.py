"""``plugin-operator operator``: run the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import kopf

from plugin_operator.controller.config import ConfigError, OperatorConfig, load_config

NOISY_AT_INFO = ("kopf.objects", "aiohttp.access")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="settings file (default: /etc/plugin-operator/config.yaml if it "
                             "exists); PLUGIN_OPERATOR_* environment variables override it")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then "
                                             "$KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])


async def _run(config: OperatorConfig, kubeconfig: str | None) -> None:
    # Imported here so that `plugin-operator --help` stays fast.
    from plugin_operator.controller.handlers import register
    from plugin_operator.controller.runtime import Runtime

    registry = kopf.OperatorRegistry()
    register(registry, Runtime(config, kubeconfig))
    await kopf.operator(
        registry=registry,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level == "INFO":
        # A line for every handled event and every probe would bury what matters; kopf's
        # retries and failures (warnings and errors) still show, and DEBUG shows it all.
        for chatty in NOISY_AT_INFO:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"plugin-operator: {exc}", file=sys.stderr)
        return 2
    if args.kubeconfig:
        import os

        os.environ["KUBECONFIG"] = args.kubeconfig
    asyncio.run(_run(config, args.kubeconfig))
    return 0
