"""A plugin catalog on 127.0.0.1 (tests/support/catalog_server.py) holding signed versions
of the Python sample, for the mirror command and the operator's catalog source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.catalog_samples import package_version, sign_with
from tests.support.catalog_server import Catalog, CatalogServer
from tests.support.samples import SignedSample

TESTDATA_ID = "plugin-operator-testdata-datasource"


@pytest.fixture(scope="session")
def catalog_archives(signed_testdata_python: SignedSample,
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample as 0.1.0, 0.2.0 and 0.4.0, all signed with the key the tests trust."""
    work = tmp_path_factory.mktemp("catalog-archives")
    key = signed_testdata_python.public_key.with_name("test-signer.asc")
    archives = {"0.1.0": signed_testdata_python.archive}
    for version in ("0.2.0", "0.4.0"):
        archives[version] = sign_with(package_version(work, version),
                                      work / f"testdata-{version}.zip", key)
    return archives


@pytest.fixture
def catalog(tmp_path: Path, catalog_archives: dict[str, Path]) -> Iterator[CatalogServer]:
    """0.1.0 for any system, 0.2.0 for linux-amd64, 0.3.0 only for darwin-arm64 (so the
    latest version for backend pods is 0.2.0); a bundle may be mounted at /mirror/grafana/
    plugins once tests write it to tmp_path/bundle."""
    content = Catalog(tmp_path / "catalog",
                      bundles={"/mirror/grafana/plugins": tmp_path / "bundle" / "plugins"})
    content.publish(TESTDATA_ID, "0.1.0", catalog_archives["0.1.0"].read_bytes(), "any")
    content.publish(TESTDATA_ID, "0.2.0", catalog_archives["0.2.0"].read_bytes())
    content.publish(TESTDATA_ID, "0.3.0", b"not for linux", "darwin-arm64")
    server = CatalogServer(content).start()
    try:
        yield server
    finally:
        server.stop()
