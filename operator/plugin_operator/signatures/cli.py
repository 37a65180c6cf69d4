"""``plugin-operator verify``: would Grafana load this plugin? Exit 0 only if yes.

Takes a plugin folder, a folder of plugins (read like Grafana's plugins folder, symlinked
plugin folders followed), an archive (zip, tar.gz) or an archive URL; prints a short summary
per plugin (nested plugins included) with the dependencies plugin.json declares, or, with
``--json``, the same facts for machines. Exit codes: 0 may load, 1 refused, 2 the input
could not be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.package.archive import ArchiveError
from plugin_operator.package.discovery import PluginDiscoveryError
from plugin_operator.package.fetch import FetchError, install, is_url
from plugin_operator.package.grafana_dependency import ConstraintError, parse_version
from plugin_operator.package.plugin_json import PluginJson, PluginJsonError
from plugin_operator.signatures.keys import TrustedKeyError, TrustedKeys
from plugin_operator.signatures.model import GRAFANA_DEFAULT_APP_URL, VerifyConfig
from plugin_operator.signatures.policy import (
    LoadPolicy,
    PluginVerdict,
    evaluate,
    evaluate_folder,
    package_allowed,
)

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
_INCOMPATIBLE_GRAFANA = ("warn", "refuse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plugin", help="plugin folder, folder of plugins, archive file "
                                       "(zip/tar.gz) or URL")
    parser.add_argument("--app-url", default=GRAFANA_DEFAULT_APP_URL,
                        help="URL Grafana is served at, checked against private signatures' "
                             f"rootUrls (default: Grafana's default, {GRAFANA_DEFAULT_APP_URL})")
    parser.add_argument("--allow-unsigned", action="append", default=[], metavar="ID",
                        help="plugin id that may load without a signature (repeatable)")
    parser.add_argument("--trusted-key", action="append", default=[], type=Path, metavar="FILE",
                        help="armored public key to trust besides Grafana's (repeatable)")
    parser.add_argument("--grafana-version", default=DEFAULT_GRAFANA_VERSION,
                        type=_grafana_version, metavar="VERSION",
                        help="Grafana version to hold plugin.json's grafanaDependency against "
                             f"(default: {DEFAULT_GRAFANA_VERSION}, the version the operator "
                             "tells plugins they run in)")
    parser.add_argument("--incompatible-grafana", choices=_INCOMPATIBLE_GRAFANA,
                        default="warn",
                        help="what a grafanaDependency excluding --grafana-version does: warn "
                             "(default; Grafana loads such a plugin from disk) or refuse "
                             "(exit 1; Grafana's installer refuses such a version)")
    parser.add_argument("--sha256", help="pinned SHA-256 of the archive (archives/URLs only)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _grafana_version(text: str) -> str:
    try:
        parse_version(text)
    except ConstraintError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give Grafana's version, e.g. 12.3.0") from None
    return text


def _config(args: argparse.Namespace) -> VerifyConfig:
    keys = TrustedKeys.with_grafana_key()
    for path in args.trusted_key:
        keys = keys.adding_file(path)
    return VerifyConfig(trusted_keys=keys, app_url=args.app_url)


def _policy(args: argparse.Namespace) -> LoadPolicy:
    return LoadPolicy(allow_unsigned=frozenset(args.allow_unsigned),
                      grafana_version=args.grafana_version,
                      refuse_incompatible_grafana=args.incompatible_grafana == "refuse")


def _dependencies_dict(plugin: PluginJson) -> dict[str, object]:
    """plugin.json's dependencies in the shape Grafana's API gives them."""
    return {"grafanaDependency": plugin.grafana_dependency,
            "grafanaVersion": plugin.grafana_version,
            "plugins": [{"id": dep.id, "type": dep.type, "name": dep.name}
                        for dep in plugin.dependencies]}


def _verdict_dict(verdict: PluginVerdict, root: Path) -> dict[str, object]:
    item = verdict.verification
    return {
        "pluginId": item.plugin.id,
        "version": item.plugin.version,
        "type": item.plugin.type,
        "path": item.directory.relative_to(root).as_posix() or ".",
        "parentId": item.parent_id,
        "signature": item.signature.as_dict(),
        "angular": verdict.angular_marker,
        "dependencies": _dependencies_dict(item.plugin),
        "grafanaCompatibility": None if verdict.compatibility is None
        else verdict.compatibility.as_dict(),
        **verdict.decision.as_dict(),
    }


def _dependency_lines(plugin: PluginJson) -> list[str]:
    """As Grafana's catalog lists them under "Dependencies": Grafana's range, then each
    plugin by name and type; nothing when plugin.json declares none."""
    entries = [f"Grafana {plugin.grafana_dependency}"] if plugin.grafana_dependency else []
    entries += [f"{dep.name or dep.id} ({dep.type} {dep.id})" for dep in plugin.dependencies]
    return ["  dependencies:", *(f"    {entry}" for entry in entries)] if entries else []


def _summary(verdict: PluginVerdict) -> str:
    item, signature, decision = verdict.verification, verdict.verification.signature, \
        verdict.decision
    lines = [f"{item.plugin.id} {item.plugin.version or '(no version)'} ({item.plugin.type})"
             + (f", nested in {item.parent_id}" if item.parent_id else "")]
    facts = [("signature", str(signature.status)),
             ("type", str(signature.type) if signature.type else "-"),
             ("signed by", f"{signature.org_name} ({signature.org})" if signature.org else "-"),
             ("key", signature.key_id or "-")]
    if signature.reason and decision.allowed:
        facts.append(("detail", signature.reason))
    lines += [f"  {label + ':':<11}{value}" for label, value in facts]
    lines += _dependency_lines(item.plugin)
    if decision.allowed:
        lines.append("  result:    may load" + (f" ({decision.message})"
                                                 if "not recommended" in decision.message else ""))
    else:
        lines.append(f"  result:    REFUSED [{decision.error_code}]")
        lines.append(f"  {decision.message}")
    lines += [f"  warning:   {warning}" for warning in decision.warnings]
    return "\n".join(lines)


def _report(verdicts: list[PluginVerdict], root: Path, args: argparse.Namespace) -> int:
    allowed = package_allowed(verdicts)
    if args.json:
        print(json.dumps({"allowed": allowed,
                          "plugins": [_verdict_dict(v, root) for v in verdicts]}, indent=2))
    else:
        print("\n".join(_summary(v) for v in verdicts))
    return 0 if allowed else EXIT_REFUSED


def run(args: argparse.Namespace) -> int:
    source = args.plugin
    try:
        if not is_url(source) and Path(source).is_dir():
            folder = Path(source)
            return _report(evaluate_folder(folder, _config(args), _policy(args)), folder, args)
        with tempfile.TemporaryDirectory(prefix="plugin-verify-") as work:
            installed = install(source, Path(work) / "plugin", args.sha256)
            root = installed.plugin_dir
            return _report(evaluate(root, _config(args), _policy(args)), root, args)
    except (PluginJsonError, PluginDiscoveryError, ArchiveError, FetchError,
            TrustedKeyError) as exc:
        if args.json:
            print(json.dumps({"allowed": False, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
