"""Plugins that fail their handshake: clear errors, bounded waits, nothing left running."""

import asyncio
from pathlib import Path

import pytest

from tests.support.host_launcher import HostStartError, start_host

pytestmark = pytest.mark.integration


async def _fails(plugin_dir: Path, tmp_path: Path, *args: str) -> str:
    with pytest.raises(HostStartError) as failure:
        await asyncio.wait_for(start_host(plugin_dir, tmp_path / "host", args), 60)
    assert "exit 3" in str(failure.value)
    return (tmp_path / "host" / "termination-log").read_text()


async def test_silent_plugin_gets_a_bounded_wait(fake_plugin, tmp_path: Path) -> None:
    message = await _fails(fake_plugin("exec sleep 300"), tmp_path, "--handshake-timeout", "1")
    assert "no handshake line within 1 s" in message


async def test_unsupported_protocol_version_is_rejected(fake_plugin, tmp_path: Path) -> None:
    message = await _fails(fake_plugin('echo "1|1|unix|/tmp/x|grpc|"; exec sleep 300'),
                           tmp_path)
    assert "version '1' not supported" in message


async def test_plugin_exiting_before_handshake(fake_plugin, tmp_path: Path) -> None:
    message = await _fails(fake_plugin('echo "cannot open config" >&2; exit 4'), tmp_path)
    assert "exited (code 4) before printing its handshake" in message
    assert "cannot open config" in message


async def test_missing_executable_is_a_clear_error(fake_plugin, tmp_path: Path) -> None:
    directory = fake_plugin("true")
    for exe in directory.glob("gpx_fake_*"):
        exe.unlink()
    with pytest.raises(HostStartError) as failure:
        await start_host(directory, tmp_path / "host")
    assert "exit 2" in str(failure.value)
    assert "gpx_fake_linux_" in (tmp_path / "host" / "termination-log").read_text()
