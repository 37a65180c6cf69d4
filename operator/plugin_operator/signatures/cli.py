"""``plugin-operator verify``: would Grafana load this plugin? Exit 0 only if yes.

Takes a plugin directory, an archive (zip, tar.gz) or an archive URL; prints a short summary
per plugin (nested plugins included) or, with ``--json``, the same facts for machines.
Exit codes: 0 may load, 1 refused, 2 the input could not be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from plugin_operator.package.archive import ArchiveError, plugin_root_of
from plugin_operator.package.fetch import FetchError, install, is_url
from plugin_operator.package.plugin_json import PluginJsonError
from plugin_operator.signatures.keys import TrustedKeyError, TrustedKeys
from plugin_operator.signatures.model import GRAFANA_DEFAULT_APP_URL, VerifyConfig
from plugin_operator.signatures.policy import LoadPolicy, PluginVerdict, evaluate, package_allowed

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plugin", help="plugin directory, archive file (zip/tar.gz) or URL")
    parser.add_argument("--app-url", default=GRAFANA_DEFAULT_APP_URL,
                        help="URL Grafana is served at, checked against private signatures' "
                             f"rootUrls (default: Grafana's default, {GRAFANA_DEFAULT_APP_URL})")
    parser.add_argument("--allow-unsigned", action="append", default=[], metavar="ID",
                        help="plugin id that may load without a signature (repeatable)")
    parser.add_argument("--trusted-key", action="append", default=[], type=Path, metavar="FILE",
                        help="armored public key to trust besides Grafana's (repeatable)")
    parser.add_argument("--sha256", help="pinned SHA-256 of the archive (archives/URLs only)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _config(args: argparse.Namespace) -> VerifyConfig:
    keys = TrustedKeys.with_grafana_key()
    for path in args.trusted_key:
        keys = keys.adding_file(path)
    return VerifyConfig(trusted_keys=keys, app_url=args.app_url)


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
        **verdict.decision.as_dict(),
    }


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
    if decision.allowed:
        lines.append("  result:    may load" + (f" ({decision.message})"
                                                 if "not recommended" in decision.message else ""))
    else:
        lines.append(f"  result:    REFUSED [{decision.error_code}]")
        lines.append(f"  {decision.message}")
    return "\n".join(lines)


def _verify(root: Path, args: argparse.Namespace) -> int:
    verdicts = evaluate(root, _config(args),
                        LoadPolicy(allow_unsigned=frozenset(args.allow_unsigned)))
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
            return _verify(plugin_root_of(Path(source)), args)
        with tempfile.TemporaryDirectory(prefix="plugin-verify-") as work:
            installed = install(source, Path(work) / "plugin", args.sha256)
            return _verify(installed.plugin_dir, args)
    except (PluginJsonError, ArchiveError, FetchError, TrustedKeyError) as exc:
        if args.json:
            print(json.dumps({"allowed": False, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
