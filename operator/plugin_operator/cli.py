"""The ``plugin-operator`` command: one entry point, one subcommand per component.

Each subcommand lives in its own module, imported only when chosen, so ``verify`` does
not pay for importing kopf and the host does not import the gateway. A subcommand module
provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from plugin_operator import __version__

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("plugin_operator.controller.cli", "run the operator (reconciles Plugins)"),
    "gateway": ("plugin_operator.gateway.cli", "run the Grafana-compatible HTTP gateway"),
    "host": ("plugin_operator.host.cli", "run a plugin backend the way Grafana does"),
    "fetch": ("plugin_operator.package.cli", "fetch and check a plugin archive into a folder"),
    "verify": ("plugin_operator.signatures.cli", "verify a plugin's signature like Grafana"),
    "pack": ("plugin_operator.package.pack_cli", "zip a plugin folder, to a file or an upload"),
    "mirror": ("plugin_operator.package.mirror_cli",
               "copy plugins from a catalog into an offline bundle (a catalog on disk)"),
}


class Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> Subcommand:
    return cast(Subcommand, importlib.import_module(SUBCOMMANDS[name][0]))


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plugin-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return _load(args.command).run(args)


if __name__ == "__main__":
    sys.exit(main())
