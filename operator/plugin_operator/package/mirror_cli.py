"""``plugin-operator mirror``: copy plugins from a catalog into an offline bundle.

What to copy comes from ``ID@VERSION`` arguments (``latest`` allowed), ``--list`` files (one
``ID@VERSION`` a line, ``#`` starts a comment) and ``--manifest`` files (Plugin objects in
YAML, which name a plugin id and a catalog version). Each is resolved against the catalog
(``--catalog``, or a Plugin's own spec.source.catalog.url) the way the operator resolves it,
downloaded, refused unless it has the SHA-256 the catalog publishes, and verified as
``plugin-operator verify`` does, before it joins the bundle folder (package/bundle.py), which
a cluster without the catalog then uses as its catalog (docs/offline.md). Exit codes: 0 all
copied, 1 some refused or not found (the rest are in the bundle), 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plugin_operator.models.resources import CatalogSource, SpecError, parse_plugin_spec
from plugin_operator.models.settings import DEFAULT_GRAFANA_VERSION
from plugin_operator.package.archive import ArchiveError, ExtractionLimits, extract_archive
from plugin_operator.package.bundle import Bundle, BundleEntry, BundleError, file_digests
from plugin_operator.package.catalog import DEFAULT_CATALOG_URL, LATEST, CatalogError
from plugin_operator.package.catalog_client import resolve
from plugin_operator.package.fetch import FetchError, download, retrying
from plugin_operator.package.plugin_json import PluginJsonError
from plugin_operator.signatures.keys import TrustedKeyError, TrustedKeys
from plugin_operator.signatures.model import GRAFANA_DEFAULT_APP_URL, VerifyConfig
from plugin_operator.signatures.policy import LoadPolicy, evaluate, package_allowed

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class MirrorError(Exception):
    """One plugin could not be copied; the others still are."""


@dataclass(frozen=True)
class Wanted:
    plugin_id: str
    version: str  # a version, or latest
    catalog: str | None  # a Plugin's own catalog (spec.source.catalog.url)
    origin: str  # where it was asked for, for messages


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plugins", nargs="*", metavar="ID@VERSION",
                        help="a plugin id and version (or latest) to copy, e.g. "
                             "grafana-clickhouse-datasource@4.0.0")
    parser.add_argument("--list", action="append", default=[], type=Path, metavar="FILE",
                        help="a file of ID@VERSION lines (repeatable; - reads stdin)")
    parser.add_argument("--manifest", action="append", default=[], type=Path, metavar="FILE",
                        help="a YAML file of Plugin objects whose source is a catalog "
                             "(repeatable; other Plugins in it are skipped)")
    parser.add_argument("--catalog", default=DEFAULT_CATALOG_URL, metavar="URL",
                        help=f"the catalog's base URL (default {DEFAULT_CATALOG_URL})")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="DIR",
                        help="the bundle folder: created, or added to when it is a bundle")
    parser.add_argument("--tarball", type=Path, metavar="FILE",
                        help="also pack the bundle into this tarball (.tar, or .tar.gz)")
    parser.add_argument("--trusted-key", action="append", default=[], type=Path,
                        metavar="FILE", help="armored public key to trust besides Grafana's "
                                             "(repeatable), as the operator's trustedKeys")
    parser.add_argument("--allow-unsigned", action="append", default=[], metavar="ID",
                        help="plugin id that may be copied without a signature (repeatable)")
    parser.add_argument("--app-url", default=GRAFANA_DEFAULT_APP_URL,
                        help="the operator's appUrl, checked against private signatures")
    parser.add_argument("--grafana-version", default=DEFAULT_GRAFANA_VERSION,
                        help="the Grafana version the catalog is told (grafana.com marks the "
                             f"versions compatible with it); default {DEFAULT_GRAFANA_VERSION}")
    parser.add_argument("--retry-seconds", type=float, default=60.0,
                        help="how long a download that fails for a passing reason is retried")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def parse_item(text: str, origin: str) -> Wanted:
    plugin_id, at, version = text.strip().partition("@")
    if not at or not plugin_id or not version:
        raise ValueError(f"{origin}: {text.strip()!r} is not ID@VERSION (e.g. "
                         "grafana-clickhouse-datasource@4.0.0 or ...@latest)")
    return Wanted(plugin_id, version, None, origin)


def read_list(lines: Iterable[str], name: str) -> list[Wanted]:
    wanted = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            wanted.append(parse_item(text, f"{name}:{number}"))
    return wanted


def read_manifests(text: str, name: str) -> tuple[list[Wanted], list[str]]:
    """The catalog plugins of the Plugin objects in ``text``, and notes on what was skipped."""
    wanted, notes = [], []
    for document in yaml.safe_load_all(text):
        items = document.get("items") if isinstance(document, Mapping) and \
            document.get("kind") == "List" else [document]
        for obj in items or ():
            if not isinstance(obj, Mapping) or obj.get("kind") != "Plugin":
                continue
            label = f"{name}: Plugin {(obj.get('metadata') or {}).get('name', '?')}"
            try:
                spec = parse_plugin_spec(obj.get("spec") or {})
            except SpecError as exc:
                raise ValueError(f"{label}: {exc}") from None
            source = spec.source
            if not isinstance(source, CatalogSource):
                notes.append(f"{label} does not install from a catalog; skipped")
                continue
            wanted.append(Wanted(spec.plugin_id, source.version, source.url, label))
    return wanted, notes


def _wanted(args: argparse.Namespace) -> tuple[list[Wanted], list[str]]:
    wanted = [parse_item(item, "argument") for item in args.plugins]
    notes: list[str] = []
    for path in args.list:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        wanted += read_list(text.splitlines(), str(path))
    for path in args.manifest:
        found, skipped = read_manifests(path.read_text(), str(path))
        wanted += found
        notes += skipped
    return wanted, notes


def mirror_one(item: Wanted, bundle: Bundle, args: argparse.Namespace,
               keys: TrustedKeys) -> tuple[BundleEntry, bool]:
    """Copy ``item`` into ``bundle``; the entry, and whether it was there already."""
    base = item.catalog or args.catalog
    try:
        resolved = resolve(base, item.plugin_id, item.version,
                           grafana_version=args.grafana_version)
    except CatalogError as exc:
        raise MirrorError(f"[{exc.code}] catalog {base}: {exc.message}") from None
    selection = resolved.selection
    if bundle.holds(item.plugin_id, selection.version, selection.sha256):
        return bundle.entries[(item.plugin_id, selection.version)], True
    limits = ExtractionLimits()
    with tempfile.TemporaryDirectory(prefix="plugin-mirror-") as work:
        archive = Path(work) / "archive"
        try:
            sha256, size = retrying(
                lambda: download(resolved.source, archive, selection.sha256 or None,
                                 limits.max_total_bytes),
                args.retry_seconds, lambda line: print(line, file=sys.stderr))
            root = extract_archive(archive, Path(work) / "plugin", limits)
            verdicts = evaluate(root, VerifyConfig(keys, args.app_url),
                                LoadPolicy(allow_unsigned=frozenset(args.allow_unsigned),
                                           grafana_version=args.grafana_version))
        except (FetchError, ArchiveError, PluginJsonError, ValueError) as exc:
            raise MirrorError(f"{item.plugin_id} {selection.version}: {exc}") from None
        refused = next((v for v in verdicts if not v.decision.allowed), None)
        if refused is not None or not package_allowed(verdicts):
            decision = (refused or verdicts[0]).decision
            raise MirrorError(f"{item.plugin_id} {selection.version} is refused "
                              f"[{decision.error_code}]: {decision.message}")
        top = verdicts[0].verification
        if top.plugin.id != item.plugin_id or \
                top.plugin.version.lstrip("v") != selection.version.lstrip("v"):
            raise MirrorError(f"the catalog's {item.plugin_id} {selection.version} holds "
                              f"{top.plugin.id} {top.plugin.version}; not copied")
        _, md5 = file_digests(archive)
        signature = top.signature
        entry = BundleEntry(item.plugin_id, selection.version, selection.package, sha256, md5,
                            size, resolved.source, str(signature.status),
                            str(signature.type or ""), signature.org_name or signature.org or "")
        bundle.add(entry, archive)
    return entry, False


def _keys(paths: list[Path]) -> TrustedKeys:
    keys = TrustedKeys.with_grafana_key()
    for path in paths:
        keys = keys.adding_file(path)
    return keys


def run(args: argparse.Namespace) -> int:
    try:
        wanted, notes = _wanted(args)
        bundle = Bundle(args.output)
        keys = _keys(args.trusted_key)
    except (OSError, ValueError, yaml.YAMLError, TrustedKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not wanted:
        print("error: nothing to mirror: give ID@VERSION, --list or --manifest",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    for item in dict.fromkeys(wanted):  # each once, in the order asked
        try:
            entry, present = mirror_one(item, bundle, args, keys)
        except (MirrorError, BundleError) as exc:
            results.append({"pluginId": item.plugin_id, "version": item.version, "ok": False,
                            "error": str(exc), "origin": item.origin})
            print(f"error: {exc}", file=sys.stderr)
            continue
        results.append({**entry.to_json(), "ok": True, "alreadyPresent": present,
                        "requested": item.version})
        if not args.json:
            asked = f" (for {LATEST})" if item.version == LATEST else ""
            print(f"{'kept' if present else 'mirrored'} {entry.plugin_id} {entry.version}"
                  f"{asked}: {entry.package}, sha256 {entry.sha256}, signature "
                  f"{entry.signature}" + (f" ({entry.signature_type}, {entry.signed_by})"
                                          if entry.signature_type else ""))
    bundle.write()
    if args.tarball:
        bundle.pack(args.tarball)
    failed = sum(not r["ok"] for r in results)
    if args.json:
        print(json.dumps({"bundle": str(args.output), "catalogUrl": bundle.catalog_url(),
                          "tarball": str(args.tarball) if args.tarball else None,
                          "plugins": results}, indent=2))
    else:
        print(f"bundle {args.output}: {len(bundle.entries)} archive(s); as a catalog: "
              f"{bundle.catalog_url()}" + (f"; packed into {args.tarball}" if args.tarball
                                           else ""))
    return EXIT_FAILED if failed else 0
