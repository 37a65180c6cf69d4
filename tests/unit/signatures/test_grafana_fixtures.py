"""The verifier gives exactly the results Grafana's own tests expect for its signed fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.signatures import SignatureStatus, VerifyConfig, verify_bundle, verify_plugin
from plugin_operator.signatures.keys import TrustedKeys
from tests.unit.signatures.conftest import copy_fixture, expected_results, grafana_fixtures


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['pluginDir']}@{case['appUrl']}"


@pytest.mark.parametrize("case", expected_results(), ids=_case_id)
def test_fixture_matches_grafana(case: dict[str, Any], tmp_path: Path) -> None:
    top = case["pluginDir"].split("/")[0]
    copy = copy_fixture(top, tmp_path / top)
    plugin_dir = tmp_path / case["pluginDir"]
    config = VerifyConfig(app_url=case["appUrl"]) if case["appUrl"] else VerifyConfig()
    # A nested plugin is verified as part of its parent's package, as Grafana loads it.
    package_root = copy / "parent" if top == "nested-plugins" else plugin_dir

    results = {item.directory: item.signature for item in verify_bundle(package_root, config)}
    signature = results[plugin_dir]

    got = {"status": str(signature.status),
           "type": None if signature.type is None else str(signature.type),
           "org": signature.org, "orgName": signature.org_name}
    want = {key: case[key] for key in ("status", "type", "org", "orgName")}
    assert got == want, signature.reason


# Grafana's includes-symlinks fixture: two links (name -> target). A copy of it may hold
# them as links or as plain files with the target's path (a checkout without symlinks);
# each test builds the form it checks.
FIXTURE_LINKS = {"symlink_to_txt": "text.txt", "extra": "dashboards/extra"}


def _with_links(tmp_path: Path, as_links: bool) -> Path:
    copy = tmp_path / ("links" if as_links else "flat")
    shutil.copytree(grafana_fixtures() / "includes-symlinks", copy, symlinks=True)
    for name, target in FIXTURE_LINKS.items():
        path = copy / name
        path.unlink()
        if as_links:
            path.symlink_to(target)
        else:
            path.write_text(target)
    return copy


def test_symlinks_stored_as_plain_files_are_modified(tmp_path: Path) -> None:
    flat = _with_links(tmp_path, as_links=False)

    result = verify_plugin(flat, VerifyConfig(app_url="http://localhost:3000/"))

    assert result.status is SignatureStatus.MODIFIED
    assert result.changed_files == ("symlink_to_txt",)
    assert result.unlisted_files == ("extra",)


def test_symlinks_inside_the_plugin_are_followed_and_valid(tmp_path: Path) -> None:
    linked = _with_links(tmp_path, as_links=True)

    result = verify_plugin(linked, VerifyConfig(app_url="http://localhost:3000/"))

    assert result.status is SignatureStatus.VALID, result.reason


def test_grafana_signed_plugin_is_invalid_when_grafana_key_not_trusted(tmp_path: Path) -> None:
    copy = copy_fixture("test-app", tmp_path / "test-app")

    result = verify_plugin(copy, VerifyConfig(trusted_keys=TrustedKeys()))

    assert result.status is SignatureStatus.INVALID
    assert "7e4d0c6a708866e7" in result.reason
    assert "not trusted" in result.reason


def test_nested_plugin_manifest_elsewhere_must_be_listed(tmp_path: Path) -> None:
    copy = copy_fixture("nested-plugins", tmp_path / "nested-plugins") / "parent"
    (copy / "nested" / "plugin.json").rename(copy / "nested" / "renamed.json")

    result = verify_plugin(copy)

    assert result.status is SignatureStatus.MODIFIED
    assert "nested/MANIFEST.txt" in result.unlisted_files
