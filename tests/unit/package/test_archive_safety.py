"""Archive extraction: honest archives install; malicious ones are refused, leaving nothing."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from plugin_operator.package.archive import ArchiveError, ExtractionLimits, extract_archive
from plugin_operator.package.fetch import FetchError, install, install_bytes
from tests.unit.package.conftest import (
    PLUGIN_JSON,
    honest_entries,
    tar_member,
    write_tar,
    write_zip,
    zip_bytes,
)

TOP = "acme-test-datasource"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory holding only the destination's parent; the sentinel sits beside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "plugins").mkdir()
    return tmp_path


def _assert_nothing_written(work: Path) -> None:
    assert list((work / "plugins").iterdir()) == []
    assert list((work / "outside").iterdir()) == []
    assert sorted(p.name for p in work.iterdir()) == ["archive", "outside", "plugins"]


def _refused(archive: Path, work: Path, match: str, limits: ExtractionLimits | None = None) -> str:
    with pytest.raises(ArchiveError, match=match) as error:
        extract_archive(archive, work / "plugins" / "dest", limits)
    _assert_nothing_written(work)
    return str(error.value)


def test_zip_with_top_folder_installs(work: Path) -> None:
    archive = write_zip(work / "archive", honest_entries())

    dest = extract_archive(archive, work / "plugins" / "dest")

    assert (dest / "plugin.json").read_bytes() == PLUGIN_JSON
    assert os.access(dest / "gpx_test_linux_amd64", os.X_OK)
    assert not os.access(dest / "img" / "logo.svg", os.X_OK)
    assert sorted(p.name for p in (work / "plugins").iterdir()) == ["dest"]


def test_tar_gz_with_in_plugin_links_installs(work: Path) -> None:
    archive = write_tar(work / "archive", [
        (tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
        (tar_member(f"{TOP}/gpx_test_linux_amd64", mode=0o755), b"\x7fELF"),
        (tar_member(f"{TOP}/copy", tarfile.LNKTYPE, link=f"{TOP}/plugin.json"), b""),
        (tar_member(f"{TOP}/link.json", tarfile.SYMTYPE, link="plugin.json"), b""),
    ])

    dest = extract_archive(archive, work / "plugins" / "dest")

    assert (dest / "copy").read_bytes() == PLUGIN_JSON
    assert os.readlink(dest / "link.json") == "plugin.json"
    assert os.access(dest / "gpx_test_linux_amd64", os.X_OK)


def test_empty_existing_destination_is_replaced(work: Path) -> None:
    archive = write_zip(work / "archive", honest_entries())
    (work / "plugins" / "dest").mkdir()

    assert (extract_archive(archive, work / "plugins" / "dest") / "plugin.json").is_file()


def test_non_empty_destination_is_refused(work: Path) -> None:
    archive = write_zip(work / "archive", honest_entries())
    (work / "plugins" / "dest").mkdir()
    (work / "plugins" / "dest" / "keep").write_text("mine")

    with pytest.raises(ArchiveError, match="not an empty directory"):
        extract_archive(archive, work / "plugins" / "dest")
    assert (work / "plugins" / "dest" / "keep").read_text() == "mine"


@pytest.mark.parametrize("name", [f"{TOP}/../../outside/evil", "../outside/evil",
                                  f"{TOP}/a/../../../outside/evil"])
def test_zip_slip_is_refused(work: Path, name: str) -> None:
    archive = write_zip(work / "archive", [*honest_entries(), (name, b"pwned", 0)])

    _refused(archive, work, "climbs out")


@pytest.mark.parametrize("name", [f"/{work_name}" for work_name in ("tmp/evil", "etc/passwd")]
                         + ["C:/evil", "acme\\..\\evil"])
def test_absolute_and_windows_paths_are_refused(work: Path, name: str) -> None:
    archive = write_zip(work / "archive", [*honest_entries(), (name, b"pwned", 0)])

    _refused(archive, work, "absolute path|backslashes")


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "../../../../../etc"])
def test_zip_symlink_escaping_is_refused(work: Path, target: str) -> None:
    archive = write_zip(work / "archive", [
        *honest_entries(), (f"{TOP}/leak", target.encode(), stat.S_IFLNK | 0o777)])

    _refused(archive, work, "outside the plugin|relative path")


def test_symlink_to_another_top_folder_is_refused(work: Path) -> None:
    # Inside the archive but outside the plugin folder that ends up installed.
    archive = write_tar(work / "archive", [
        (tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
        (tar_member(f"{TOP}/leak", tarfile.SYMTYPE, link="../other/secret"), b""),
    ])

    _refused(archive, work, "outside the plugin|not a plugin")


def test_writing_through_a_symlink_is_refused(work: Path) -> None:
    archive = write_tar(work / "archive", [
        (tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
        (tar_member(f"{TOP}/lib", tarfile.SYMTYPE, link="../../outside"), b""),
        (tar_member(f"{TOP}/lib/evil"), b"pwned"),
    ])

    _refused(archive, work, "outside the plugin|not a directory")


def test_tar_hard_link_leaving_the_archive_is_refused(work: Path) -> None:
    archive = write_tar(work / "archive", [
        (tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
        (tar_member(f"{TOP}/passwd", tarfile.LNKTYPE, link="/etc/passwd"), b""),
    ])

    _refused(archive, work, "absolute path")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_are_refused(work: Path, kind: bytes) -> None:
    archive = write_tar(work / "archive", [
        (tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON), (tar_member(f"{TOP}/dev", kind), b"")])

    _refused(archive, work, "device, FIFO")


def test_zip_bomb_file_ratio_is_refused(work: Path) -> None:
    # Random padding keeps the archive as a whole under 100:1; the one file is far over it.
    archive = write_zip(work / "archive", [*honest_entries(),
                                           (f"{TOP}/padding.bin", os.urandom(200_000), 0),
                                           (f"{TOP}/bomb.bin", bytes(5 * 1024 * 1024), 0)])

    message = _refused(archive, work, "zip bomb")
    assert "max_file_ratio" in message
    assert "--max-file-ratio" in message


def test_zip_bomb_total_ratio_is_refused(work: Path) -> None:
    archive = write_zip(work / "archive", [*honest_entries(),
                                           (f"{TOP}/bomb.bin", bytes(50 * 1024 * 1024), 0)])

    _refused(archive, work, "max_total_ratio")


def test_tar_bomb_total_ratio_is_refused(work: Path) -> None:
    archive = write_tar(work / "archive", [(tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
                                           (tar_member(f"{TOP}/bomb"), bytes(20 * 1024 * 1024))])

    _refused(archive, work, "max_total_ratio")


def test_total_size_limit(work: Path) -> None:
    archive = write_zip(work / "archive", [*honest_entries(),
                                           (f"{TOP}/big.bin", os.urandom(300_000), 0)])

    message = _refused(archive, work, "max_total_bytes",
                       ExtractionLimits(max_total_bytes=200_000))
    assert "--max-total-bytes" in message


def test_too_many_files(work: Path) -> None:
    entries = [*honest_entries(), *[(f"{TOP}/f{i}.txt", b"x", 0) for i in range(20)]]
    archive = write_zip(work / "archive", entries)

    _refused(archive, work, "max_files", ExtractionLimits(max_files=10))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_entries_are_refused(work: Path) -> None:
    archive = write_zip(work / "archive", [*honest_entries(), (f"{TOP}/plugin.json", b"{}", 0)])

    _refused(archive, work, "more than once")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_truncated_archive_is_refused(work: Path, kind: str) -> None:
    full = work / "full"
    if kind == "zip":
        write_zip(full, [*honest_entries(), (f"{TOP}/data.bin", os.urandom(100_000), 0)])
    else:
        write_tar(full, [(tar_member(f"{TOP}/plugin.json"), PLUGIN_JSON),
                         (tar_member(f"{TOP}/data.bin"), os.urandom(100_000))])
    data = full.read_bytes()
    full.unlink()
    (work / "archive").write_bytes(data[: len(data) // 2])

    _refused(archive=work / "archive", work=work, match="truncated|not a plugin")


def test_archive_without_plugin_layout_is_refused(work: Path) -> None:
    archive = write_zip(work / "archive", [*honest_entries("one"), *honest_entries("two")])

    _refused(archive, work, "not a plugin")


def test_install_bytes_checks_the_pinned_digest(work: Path) -> None:
    data = zip_bytes(honest_entries())
    (work / "archive").write_bytes(b"")

    with pytest.raises(FetchError, match="was pinned"):
        install_bytes(data, work / "plugins" / "dest", sha256="0" * 64)
    _assert_nothing_written(work)

    installed = install_bytes(data, work / "plugins" / "dest",
                              sha256=hashlib.sha256(data).hexdigest())
    assert (installed.plugin_dir / "plugin.json").is_file()
    assert sorted(p.name for p in (work / "plugins").iterdir()) == ["dest"]


def test_install_from_local_path(work: Path) -> None:
    archive = write_zip(work / "archive", honest_entries())

    installed = install(str(archive), work / "plugins" / "dest")

    assert installed.size == archive.stat().st_size
    assert sorted(p.name for p in (work / "plugins").iterdir()) == ["dest"]


def test_bad_digest_format_is_explained(work: Path) -> None:
    with pytest.raises(FetchError, match="64 hex digits"):
        install_bytes(b"", work / "plugins" / "dest", sha256="abc")
