"""Fixtures for signature tests: Grafana's signed fixtures and freshly generated P-521 keys."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.signatures.keys import TrustedKeys
from plugin_operator.signatures.signing import generate_key

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO.parent / "shared" / "fixtures" / "grafana-signed"
# The fixture copy stores Grafana's two test symlinks as small files holding the link
# target (as git does without core.symlinks); the tests restore them in a copy.
FIXTURE_SYMLINKS = {"includes-symlinks": {"symlink_to_txt": "text.txt",
                                          "extra": "dashboards/extra"}}


def grafana_fixtures() -> Path:
    if not (FIXTURES / "expected.json").is_file():
        pytest.fail(f"Grafana-signed fixtures not found at {FIXTURES}; they are expected at "
                    "<repo>/../shared/fixtures/grafana-signed")
    return FIXTURES


def expected_results() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((grafana_fixtures() / "expected.json").read_text())
    return data


def copy_fixture(name: str, target: Path) -> Path:
    """A writable copy of a fixture folder, with its symlinks restored as real symlinks."""
    shutil.copytree(grafana_fixtures() / name, target, symlinks=True)
    for folder in [target, *target.rglob("*")]:
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    for link, destination in FIXTURE_SYMLINKS.get(name, {}).items():
        (target / link).unlink()
        (target / link).symlink_to(destination)
    return target


@pytest.fixture(scope="session")
def signing_key() -> Any:
    return generate_key("signatures test <test@example.invalid>")


@pytest.fixture(scope="session")
def other_key() -> Any:
    return generate_key("someone else <else@example.invalid>")


@pytest.fixture(scope="session")
def trusted(signing_key: Any) -> TrustedKeys:
    return TrustedKeys.with_grafana_key().adding([signing_key.extract_certificate()])


@pytest.fixture
def make_plugin(tmp_path: Path) -> Callable[..., Path]:
    """Create a small backend data source plugin directory; returns its path."""

    def make(plugin_id: str = "acme-test-datasource", version: str = "1.2.3",
             files: dict[str, bytes] | None = None, name: str = "plugin") -> Path:
        root = tmp_path / name
        root.mkdir()
        (root / "plugin.json").write_text(json.dumps({
            "id": plugin_id, "type": "datasource", "name": "Test", "backend": True,
            "executable": "gpx_test", "info": {"version": version}}))
        contents = {"module.js": b"define([], function () { return {}; });\n",
                    "gpx_test_linux_amd64": b"\x7fELF not really\n",
                    "img/logo.svg": b"<svg/>\n"}
        contents.update(files or {})
        for rel, data in contents.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    return make
