"""``plugin-operator fetch``: download (or copy) a plugin archive, check it, unpack it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plugin_operator.package.archive import ArchiveError, ExtractionLimits
from plugin_operator.package.fetch import (
    FetchError,
    InstalledPackage,
    first_of,
    install,
    retrying,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ExtractionLimits()
    parser.add_argument("source", nargs="+",
                        help="archive URL (http, https, file) or local path; several: copies "
                             "of one archive (give --sha256), tried in order until one works")
    parser.add_argument("--dest", type=Path, required=True,
                        help="directory to create for the plugin (must not exist, or be empty)")
    parser.add_argument("--sha256", help="pinned SHA-256 of the archive; refused if different")
    parser.add_argument("--max-total-bytes", type=int, default=defaults.max_total_bytes)
    parser.add_argument("--max-files", type=int, default=defaults.max_files)
    parser.add_argument("--max-file-ratio", type=float, default=defaults.max_file_ratio)
    parser.add_argument("--max-total-ratio", type=float, default=defaults.max_total_ratio)
    parser.add_argument("--retry-seconds", type=float, default=60.0,
                        help="keep retrying a download that fails for a passing reason (no "
                             "route or DNS yet, a server error) this long; default 60")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds one attempt may wait to connect or for the next bytes "
                             "before it counts as failed (and is retried); default 10")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _install_retrying(args: argparse.Namespace, limits: ExtractionLimits) -> InstalledPackage:
    # A pod's init step may start before its network (policy, DNS, the operator's Service)
    # is ready for it; waiting here is quicker than the kubelet's crash-loop backoff. Short
    # attempts matter: a packet dropped by a policy not yet in place stalls a connect until
    # its timeout, and one long attempt would use up the whole retry window.
    # Several sources are copies of one pinned archive: each attempt tries them in order.
    def attempt(source: str) -> InstalledPackage:
        installed = install(source, args.dest, args.sha256, limits, timeout=args.timeout)
        args.installed_from = source
        return installed

    return retrying(lambda: first_of(args.source, attempt), args.retry_seconds,
                    lambda line: print(line, file=sys.stderr))


def run(args: argparse.Namespace) -> int:
    limits = ExtractionLimits(max_total_bytes=args.max_total_bytes, max_files=args.max_files,
                              max_file_ratio=args.max_file_ratio,
                              max_total_ratio=args.max_total_ratio)
    if len(args.source) > 1 and not args.sha256:
        print("error: several sources are copies of one archive: pin it with --sha256",
              file=sys.stderr)
        return 2
    try:
        installed = _install_retrying(args, limits)
    except (FetchError, ArchiveError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, "pluginDir": str(installed.plugin_dir),
                          "sha256": installed.sha256, "size": installed.size}))
    else:
        print(f"installed {args.installed_from} into {installed.plugin_dir} "
              f"({installed.size} bytes, sha256 {installed.sha256})")
    return 0
