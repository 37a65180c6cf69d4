"""Every case of the issue, with manifests signed here by fresh P-521 keys."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.signatures import (
    SignatureStatus,
    SignatureType,
    VerifyConfig,
    verify_bundle,
    verify_plugin,
)
from plugin_operator.signatures.keys import TrustedKeys
from plugin_operator.signatures.signing import build_manifest, sign_manifest, sign_plugin

APP_URL = "https://grafana.example.com/"
MakePlugin = Callable[..., Path]


def _verify(plugin_dir: Path, trusted: TrustedKeys, app_url: str = APP_URL) -> Any:
    return verify_plugin(plugin_dir, VerifyConfig(trusted_keys=trusted, app_url=app_url))


def test_valid_private_signature(make_plugin: MakePlugin, signing_key: Any,
                                 trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, root_urls=[APP_URL], org="acme", org_name="Acme Inc")

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.VALID, result.reason
    assert (result.type, result.org, result.org_name) == (SignatureType.PRIVATE, "acme",
                                                          "Acme Inc")
    assert result.key_id == signing_key.extract_certificate().fingerprint[-16:].lower()


@pytest.mark.parametrize("app_url", ["https://grafana.example.com", "https://grafana.example.com/",
                                     "https://grafana.example.com/./"])
def test_root_url_matches_regardless_of_trailing_slash(make_plugin: MakePlugin,
                                                      signing_key: Any, trusted: TrustedKeys,
                                                      app_url: str) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, root_urls=["https://grafana.example.com"])

    assert _verify(plugin, trusted, app_url).status is SignatureStatus.VALID


@pytest.mark.parametrize("app_url", ["http://grafana.example.com/", "https://other.example.com/",
                                     "https://grafana.example.com:8443/",
                                     "https://grafana.example.com/sub/"])
def test_wrong_root_url_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                   trusted: TrustedKeys, app_url: str) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])

    result = _verify(plugin, trusted, app_url)

    assert result.status is SignatureStatus.INVALID
    assert result.type is None
    assert result.org is None
    assert APP_URL in result.reason


@pytest.mark.parametrize(("spec", "app_url", "status"), [
    ("https://*.example.com/", "https://grafana.example.com/", SignatureStatus.VALID),
    ("https://*.example.com/", "https://a.b.example.com/", SignatureStatus.INVALID),
    ("https://**.example.com/", "https://a.b.example.com/", SignatureStatus.VALID),
    ("https://grafana-?.example.com/", "https://grafana-1.example.com/", SignatureStatus.VALID),
    ("https://{dev,prod}.example.com/", "https://prod.example.com/", SignatureStatus.VALID),
    ("https://{dev,prod}.example.com/", "https://test.example.com/", SignatureStatus.INVALID),
    ("https://*.example.com/", "https://grafana.example.org/", SignatureStatus.INVALID),
])
def test_private_glob(make_plugin: MakePlugin, signing_key: Any, trusted: TrustedKeys,
                      spec: str, app_url: str, status: SignatureStatus) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, signature_type="private-glob", root_urls=[spec])

    result = _verify(plugin, trusted, app_url)

    assert result.status is status, result.reason
    if status is SignatureStatus.VALID:
        assert result.type is SignatureType.PRIVATE_GLOB


def test_glob_spec_is_not_a_glob_for_plain_private(make_plugin: MakePlugin, signing_key: Any,
                                                   trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, signature_type="private", root_urls=["https://*.example.com/"])

    assert _verify(plugin, trusted).status is SignatureStatus.INVALID


def test_community_signature_without_root_urls_is_valid_anywhere(
        make_plugin: MakePlugin, signing_key: Any, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    sign_plugin(plugin, signing_key, signature_type="community")

    result = _verify(plugin, trusted, "http://anything.invalid:1234/x")

    assert (result.status, result.type) == (SignatureStatus.VALID, SignatureType.COMMUNITY)


def _signed(make_plugin: MakePlugin, key: Any, **options: Any) -> Path:
    plugin = make_plugin()
    sign_plugin(plugin, key, root_urls=[APP_URL], **options)
    return plugin


def test_extra_file_is_modified(make_plugin: MakePlugin, signing_key: Any,
                                trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    (plugin / "img" / "extra.js").write_text("alert(1)")

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.MODIFIED
    assert result.unlisted_files == ("img/extra.js",)
    assert result.key_id is not None


def test_changed_file_is_modified(make_plugin: MakePlugin, signing_key: Any,
                                  trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    (plugin / "gpx_test_linux_amd64").write_bytes(b"\x7fELF evil\n")

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.MODIFIED
    assert result.changed_files == ("gpx_test_linux_amd64",)


def test_missing_file_is_modified(make_plugin: MakePlugin, signing_key: Any,
                                  trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    (plugin / "module.js").unlink()

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.MODIFIED
    assert result.missing_files == ("module.js",)


@pytest.mark.parametrize("override", [{"version": "9.9.9"}, {"plugin_id": "acme-other-datasource"}])
def test_version_or_id_mismatch_is_modified(make_plugin: MakePlugin, signing_key: Any,
                                            trusted: TrustedKeys, override: dict[str, str]) -> None:
    plugin = _signed(make_plugin, signing_key, **override)

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.MODIFIED
    assert "plugin.json says acme-test-datasource 1.2.3" in result.reason


def test_unknown_key_is_invalid(make_plugin: MakePlugin, other_key: Any,
                                trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, other_key)

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID
    assert "not trusted" in result.reason


def test_trusting_the_key_makes_it_valid(make_plugin: MakePlugin, other_key: Any,
                                         trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, other_key)
    more = trusted.adding_armored(str(other_key.extract_certificate()))

    assert _verify(plugin, more).status is SignatureStatus.VALID


def test_key_id_of_trusted_key_but_signed_by_another_is_invalid(
        make_plugin: MakePlugin, signing_key: Any, other_key: Any, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    body = build_manifest(plugin, signing_key, root_urls=[APP_URL])
    (plugin / "MANIFEST.txt").write_bytes(sign_manifest(body, other_key))

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID
    assert "does not verify" in result.reason


def test_corrupted_signature_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                        trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    manifest = plugin / "MANIFEST.txt"
    lines = manifest.read_text().splitlines(keepends=True)
    start = lines.index("-----BEGIN PGP SIGNATURE-----\n")
    line = next(i for i in range(start + 1, len(lines)) if len(lines[i]) > 40)
    position = len(lines[line]) // 2
    flipped = "A" if lines[line][position] != "A" else "B"
    lines[line] = lines[line][:position] + flipped + lines[line][position + 1:]
    manifest.write_text("".join(lines))

    assert _verify(plugin, trusted).status is SignatureStatus.INVALID


def test_edited_signed_text_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                       trusted: TrustedKeys) -> None:
    # Someone changes a file and patches its digest into the signed text: the text no
    # longer matches the signature.
    plugin = _signed(make_plugin, signing_key)
    (plugin / "img" / "logo.svg").write_bytes(b"<svg>changed</svg>")
    manifest = plugin / "MANIFEST.txt"
    old_digest = hashlib.sha256(b"<svg/>\n").hexdigest()
    new_digest = hashlib.sha256(b"<svg>changed</svg>").hexdigest()
    assert old_digest in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(old_digest, new_digest))

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID
    assert "does not verify" in result.reason


@pytest.mark.parametrize("manifest_version", ["1.0.0", ""])
def test_manifest_v1_is_invalid(make_plugin: MakePlugin, signing_key: Any, trusted: TrustedKeys,
                                manifest_version: str) -> None:
    plugin = _signed(make_plugin, signing_key, manifest_version=manifest_version)

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID


@pytest.mark.parametrize(("field", "value"), [("signedByOrg", ""), ("signedByOrgName", ""),
                                              ("signatureType", "homemade"), ("time", 0),
                                              ("files", {}), ("keyId", "")])
def test_missing_or_bad_v2_field_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                            trusted: TrustedKeys, field: str,
                                            value: object) -> None:
    plugin = make_plugin()
    body = build_manifest(plugin, signing_key, root_urls=[APP_URL])
    body[field] = value
    (plugin / "MANIFEST.txt").write_bytes(sign_manifest(body, signing_key))

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID
    assert field in result.reason or "signatureType" in result.reason


def test_keys_are_matched_case_insensitively_like_go(make_plugin: MakePlugin, signing_key: Any,
                                                    trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    body = build_manifest(plugin, signing_key, root_urls=[APP_URL])
    body["SignedByOrgName"] = body.pop("signedByOrgName")
    (plugin / "MANIFEST.txt").write_bytes(sign_manifest(body, signing_key))

    assert _verify(plugin, trusted).org_name == "plugin-operator test"


def test_no_manifest_is_unsigned(make_plugin: MakePlugin, trusted: TrustedKeys) -> None:
    assert _verify(make_plugin(), trusted).status is SignatureStatus.UNSIGNED


def test_tiny_manifest_counts_as_unsigned(make_plugin: MakePlugin, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    (plugin / "MANIFEST.txt").write_text("nothing")

    assert _verify(plugin, trusted).status is SignatureStatus.UNSIGNED


def test_truncated_manifest_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                       trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    manifest = plugin / "MANIFEST.txt"
    manifest.write_bytes(manifest.read_bytes()[:300])

    assert _verify(plugin, trusted).status is SignatureStatus.INVALID


def test_symlink_inside_plugin_is_hashed_under_its_own_path(
        make_plugin: MakePlugin, signing_key: Any, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    (plugin / "logo-link.svg").symlink_to("img/logo.svg")
    (plugin / "images").symlink_to("img")  # a directory link is neither listed nor followed
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])

    assert _verify(plugin, trusted).status is SignatureStatus.VALID
    (plugin / "img" / "logo.svg").write_text("changed")
    assert _verify(plugin, trusted).changed_files == ("img/logo.svg", "logo-link.svg")


def test_unlisted_symlink_is_modified(make_plugin: MakePlugin, signing_key: Any,
                                      trusted: TrustedKeys) -> None:
    plugin = _signed(make_plugin, signing_key)
    (plugin / "again.js").symlink_to("module.js")

    assert _verify(plugin, trusted).unlisted_files == ("again.js",)


def test_symlink_escaping_the_plugin_is_invalid(make_plugin: MakePlugin, signing_key: Any,
                                                trusted: TrustedKeys, tmp_path: Path) -> None:
    plugin = _signed(make_plugin, signing_key)
    (tmp_path / "secret").write_text("s3cret")
    (plugin / "img" / "leak").symlink_to(os.path.relpath(tmp_path / "secret", plugin / "img"))

    result = _verify(plugin, trusted)

    assert result.status is SignatureStatus.INVALID
    assert "img/leak" in result.reason
    assert "outside" in result.reason


def test_nested_plugins_inherit_the_parents_result(make_plugin: MakePlugin, signing_key: Any,
                                                   trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    (plugin / "panel").mkdir()
    (plugin / "panel" / "plugin.json").write_text(
        '{"id": "acme-child-panel", "type": "panel", "name": "Child", "info": {}}')
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])
    config = VerifyConfig(trusted_keys=trusted, app_url=APP_URL)

    parent, child = verify_bundle(plugin, config)
    assert (child.plugin.id, child.parent_id) == ("acme-child-panel", "acme-test-datasource")
    assert child.signature.status is parent.signature.status is SignatureStatus.VALID

    (plugin / "panel" / "module.js").write_text("changed")
    parent, child = verify_bundle(plugin, config)
    assert child.signature.status is parent.signature.status is SignatureStatus.MODIFIED


def test_a_nested_plugin_reached_through_a_link_is_listed_once(
        make_plugin: MakePlugin, signing_key: Any, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    (plugin / "vendor" / "panel").mkdir(parents=True)
    (plugin / "vendor" / "panel" / "plugin.json").write_text(
        '{"id": "acme-child-panel", "type": "panel", "name": "Child", "info": {}}')
    (plugin / "panel").symlink_to(Path("vendor") / "panel")
    sign_plugin(plugin, signing_key, root_urls=[APP_URL])

    found = verify_bundle(plugin, VerifyConfig(trusted_keys=trusted, app_url=APP_URL))

    assert [(item.directory, item.parent_id) for item in found] == [
        (plugin, None), (plugin / "panel", "acme-test-datasource")]
    assert found[1].signature.status is SignatureStatus.VALID
