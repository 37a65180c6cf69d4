"""Sign plugin directories with our own keys, for tests and private deployments.

This plays the part of grafana.com's signing service: it lists every file with its SHA-256
(by the same rules the verifier uses), fills in the fields the service fills in, and writes
a cleartext-signed MANIFEST.txt (SHA-512, like Grafana's). Trust the key's public half with
``--trusted-key`` (operator: trustedKeys) to have such plugins verify.

Command line (also ``hack/sign-plugin.sh``)::

    python -m plugin_operator.signatures.signing PLUGIN_DIR|ARCHIVE --key KEY.asc [--generate-key]
        [--output SIGNED.zip]
        [--type private] [--root-url URL ...] [--org ORG] [--org-name NAME]
"""

from __future__ import annotations

import argparse
import json
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pysequoia

from plugin_operator.package.archive import extract_archive
from plugin_operator.package.plugin_json import load_plugin_json
from plugin_operator.signatures.files import plugin_files, sha256_file
from plugin_operator.signatures.keys import key_id_of
from plugin_operator.signatures.manifest import MANIFEST_FILE, SIGNATURE_TYPES


def generate_key(user_id: str = "plugin-operator test signer <signer@example.invalid>") -> Any:
    """A new P-521 signing key (secret key object), as Grafana's own key uses."""
    return pysequoia.Tsk.generate(user_id, cipher_suite=pysequoia.CipherSuite.P521)


def load_key(path: Path) -> Any:
    """A secret key from an armored file written by :func:`save_key`."""
    return pysequoia.Tsk.from_bytes(path.read_bytes())


def save_key(key: Any, secret_path: Path, public_path: Path | None = None) -> None:
    secret_path.write_text(str(key))
    secret_path.chmod(0o600)
    if public_path is not None:
        public_path.write_text(str(key.extract_certificate()))


def public_key(key: Any) -> Any:
    return key.extract_certificate()


def build_manifest(plugin_dir: Path, key: Any, *, signature_type: str = "private",
                   root_urls: Sequence[str] = (), org: str = "plugin-operator-test",
                   org_name: str = "plugin-operator test", manifest_version: str = "2.0.0",
                   plugin_id: str | None = None, version: str | None = None,
                   time_ms: int | None = None) -> dict[str, Any]:
    """The manifest body for the plugin as it is on disk (overrides are for tests)."""
    if signature_type not in SIGNATURE_TYPES:
        raise ValueError(f"signature type {signature_type!r} is not one of "
                         f"{', '.join(sorted(SIGNATURE_TYPES))}")
    if signature_type in ("private", "private-glob") and not root_urls:
        raise ValueError("a private signature needs at least one root URL (--root-url)")
    plugin = load_plugin_json(plugin_dir)
    files = {rel: sha256_file(path) for rel, path in sorted(plugin_files(plugin_dir).items())
             if rel != MANIFEST_FILE}
    body: dict[str, Any] = {
        "manifestVersion": manifest_version,
        "signatureType": signature_type,
        "signedByOrg": org,
        "signedByOrgName": org_name,
        "plugin": plugin.id if plugin_id is None else plugin_id,
        "version": plugin.version if version is None else version,
        "time": int(time.time() * 1000) if time_ms is None else time_ms,
        "keyId": key_id_of(key),
        "files": files,
    }
    if root_urls:
        body["rootUrls"] = list(root_urls)
    return body


def sign_manifest(body: dict[str, Any], key: Any) -> bytes:
    """The cleartext-signed MANIFEST.txt content for a manifest body."""
    text = json.dumps(body, indent=2) + "\n"
    signed = pysequoia.sign(key.signer(), text.encode(), mode=pysequoia.SignatureMode.CLEAR)
    return bytes(signed)


def sign_plugin(plugin_dir: Path, key: Any, **options: Any) -> Path:
    """Write ``<plugin_dir>/MANIFEST.txt`` signed with ``key``; options as build_manifest."""
    content = sign_manifest(build_manifest(plugin_dir, key, **options), key)
    target = plugin_dir / MANIFEST_FILE
    staging = plugin_dir.parent / f".{plugin_dir.name}.MANIFEST.txt.tmp"
    staging.write_bytes(content)
    staging.replace(target)
    return target


def sign_archive(archive: Path, key: Any, output: Path, **options: Any) -> Path:
    """Sign the plugin inside a zip/tar archive; write a zip with Grafana's layout to output."""
    with tempfile.TemporaryDirectory(prefix="plugin-sign-") as work:
        plugin_dir = extract_archive(archive, Path(work) / "plugin")
        sign_plugin(plugin_dir, key, **options)
        top = load_plugin_json(plugin_dir).id
        staging = output.with_name(f".{output.name}.tmp")
        with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as target:
            for rel, path in sorted(plugin_files(plugin_dir).items()):
                info = zipfile.ZipInfo(f"{top}/{rel}", date_time=(2026, 1, 1, 0, 0, 0))
                info.external_attr = (path.stat().st_mode & 0o777 | stat.S_IFREG) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(info, path.read_bytes())
        staging.replace(output)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugin_operator.signatures.signing",
        description="Sign a plugin directory with your own P-521 key (writes MANIFEST.txt).")
    parser.add_argument("plugin", type=Path,
                        help="plugin directory (MANIFEST.txt written in it) or zip/tar archive "
                             "(signed copy written to --output, default: the archive itself)")
    parser.add_argument("--output", type=Path, help="where to write a signed archive")
    parser.add_argument("--key", type=Path, required=True,
                        help="armored secret key file; created with --generate-key")
    parser.add_argument("--generate-key", action="store_true",
                        help="create the key if the file does not exist (public part: KEY.pub.asc)")
    parser.add_argument("--type", default="private", choices=sorted(SIGNATURE_TYPES))
    parser.add_argument("--root-url", action="append", default=[], dest="root_urls",
                        help="URL the plugin may run under (repeatable; required for private)")
    parser.add_argument("--org", default="plugin-operator-test")
    parser.add_argument("--org-name", default="plugin-operator test")
    args = parser.parse_args(argv)
    public_path = args.key.with_suffix(".pub.asc")
    if not args.key.exists():
        if not args.generate_key:
            print(f"error: key file {args.key} does not exist; pass --generate-key to "
                  "create it", file=sys.stderr)
            return 2
        save_key(generate_key(), args.key, public_path)
    key = load_key(args.key)
    if not public_path.exists():
        public_path.write_text(str(public_key(key)))
    options = {"signature_type": args.type, "root_urls": args.root_urls, "org": args.org,
               "org_name": args.org_name}
    try:
        if args.plugin.is_dir():
            signed = sign_plugin(args.plugin, key, **options)
        else:
            signed = sign_archive(args.plugin, key, args.output or args.plugin, **options)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"signed {signed} with key {key_id_of(key)}; trust it with "
          f"--trusted-key {public_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
