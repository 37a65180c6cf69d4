"""``plugin-operator pack``: zip a plugin folder the way Grafana ships plugins, and write it
to a file or upload it (what a pod unpacking a plugin image runs)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from plugin_operator.package.fetch import FetchError, retrying
from plugin_operator.package.pack import PackError, pack_directory, upload


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plugin_dir", type=Path, help="the folder holding plugin.json")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", type=Path, help="write the zip here")
    target.add_argument("--upload", metavar="URL", help="PUT the zip to this URL")
    parser.add_argument("--retry-seconds", type=float, default=60.0,
                        help="keep retrying an upload that fails for a passing reason (no "
                             "route yet, a server error) this long; default 60")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds one upload attempt may take; default 30")


def run(args: argparse.Namespace) -> int:
    try:
        data = pack_directory(args.plugin_dir)
    except PackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(data).hexdigest()
    if args.output is not None:
        args.output.write_bytes(data)
        print(f"packed {args.plugin_dir} into {args.output} ({len(data)} bytes, "
              f"sha256 {digest})")
        return 0
    try:
        answer = retrying(lambda: upload(data, args.upload, args.timeout), args.retry_seconds,
                          lambda line: print(line, file=sys.stderr))
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"uploaded {args.plugin_dir} ({len(data)} bytes, sha256 {digest}): {answer}")
    return 0
