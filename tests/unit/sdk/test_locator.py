"""Locator mode of the Python SDK, checked against the Go SDK's rules (backend.Manage)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from plugin_operator.sdk import locator
from plugin_operator.sdk.locator import (
    address_env_name,
    handshake_line,
    locator_address,
    plugin_id_near,
    run_locator,
    tick_line,
)

PLUGIN_ID = "myorg-my-datasource"
ENV_NAME = "GF_PLUGIN_GRPC_ADDRESS_MYORG_MY_DATASOURCE"


@pytest.mark.parametrize(("plugin_id", "name"), [
    (PLUGIN_ID, ENV_NAME),
    ("plugin-operator-testdata-datasource",
     "GF_PLUGIN_GRPC_ADDRESS_PLUGIN_OPERATOR_TESTDATA_DATASOURCE"),
    ("grafana-x.y-app", "GF_PLUGIN_GRPC_ADDRESS_GRAFANA_X.Y_APP"),  # only '-' is replaced
    ("straße-ds", "GF_PLUGIN_GRPC_ADDRESS_STRAßE_DS"),  # Go keeps ß: no 1-to-2 mappings
])
def test_the_variable_is_named_like_the_go_sdk_names_it(plugin_id: str, name: str) -> None:
    assert address_env_name(plugin_id) == name


def test_only_a_non_empty_variable_makes_a_locator() -> None:
    assert locator_address(PLUGIN_ID, {}) is None
    assert locator_address(PLUGIN_ID, {ENV_NAME: ""}) is None
    assert locator_address(PLUGIN_ID, {ENV_NAME: "backend.plugins:10000"}) == \
        "backend.plugins:10000"
    # Passed on as written, like the Go SDK (go-plugin does the resolving).
    assert locator_address(PLUGIN_ID, {ENV_NAME: " 10.0.0.7:10000"}) == " 10.0.0.7:10000"
    assert locator_address(PLUGIN_ID, {"GF_PLUGIN_GRPC_ADDRESS_OTHER": "x:1"}) is None


def test_lines_match_the_go_locator() -> None:
    assert handshake_line("10.0.0.7:10000") == "1|2|tcp|10.0.0.7:10000|grpc"
    stamp = datetime(2026, 3, 4, 5, 6, 7)
    assert tick_line("10.0.0.7:10000", stamp) == \
        "[2026-03-04 05:06:07] using address: 10.0.0.7:10000"


def test_plugin_id_comes_from_the_plugin_json_beside_the_executable(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "plugin.json").write_text(json.dumps({"id": PLUGIN_ID}))
    (plugin / "gpx_x_linux_amd64").write_text("")
    assert plugin_id_near(str(plugin / "gpx_x_linux_amd64")) == PLUGIN_ID
    # Launched through a link from elsewhere: the real file's folder counts too.
    (tmp_path / "link").symlink_to(plugin / "gpx_x_linux_amd64")
    assert plugin_id_near(str(tmp_path / "link")) == PLUGIN_ID
    (plugin / "plugin.json").write_text("{not json")
    assert plugin_id_near(str(plugin / "gpx_x_linux_amd64")) is None
    assert plugin_id_near(str(tmp_path / "nowhere" / "exe")) is None


def test_run_locator_prints_the_handshake_then_a_line_per_tick() -> None:
    out = io.StringIO()
    stamp = datetime(2026, 1, 2, 3, 4, 5)
    assert run_locator("h:1", out=out, interval=0.01, now=lambda: stamp,
                       default_signals=False, max_ticks=2) == 0
    assert out.getvalue().splitlines() == [
        "1|2|tcp|h:1|grpc",
        "[2026-01-02 03:04:05] using address: h:1",
        "[2026-01-02 03:04:05] using address: h:1",
    ]


def test_run_locator_ends_when_nobody_reads_its_stdout() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "w") as writer:
        started = time.monotonic()
        # The reader goes away after the handshake; a 10 s tick must not be waited for.

        def read_then_leave() -> None:
            reader.readline()
            reader.close()

        thread = threading.Thread(target=read_then_leave)
        thread.start()
        assert run_locator("h:1", out=writer, default_signals=False) == 0
        thread.join()
        assert time.monotonic() - started < 5


def test_run_locator_survives_a_reader_that_is_gone_before_the_handshake() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with os.fdopen(write_fd, "w") as writer:
        assert run_locator("h:1", out=writer, default_signals=False) == 0


# --- the real process, as Grafana starts it ------------------------------------------

PLUGIN_MAIN = """
import sys
from plugin_operator.sdk import serve
class Handlers:
    pass
serve(Handlers())
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "my-plugin"
    directory.mkdir()
    (directory / "plugin.json").write_text(json.dumps({"id": PLUGIN_ID, "backend": True}))
    (directory / "main.py").write_text(PLUGIN_MAIN)
    (directory / "sockets").mkdir()
    return directory


def start(plugin_dir: Path, **env: str) -> subprocess.Popen[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("GF_PLUGIN_GRPC")}
    child_env.update({"grafana_plugin_type": "datasource", "PLUGIN_PROTOCOL_VERSIONS": "2",
                      "PLUGIN_UNIX_SOCKET_DIR": str(plugin_dir / "sockets"), **env})
    return subprocess.Popen([sys.executable, str(plugin_dir / "main.py")], env=child_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def sockets_of(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return [link for link in links if link.startswith("socket:")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_locator_process_serves_nothing_and_dies_by_signal_like_go(
        plugin_dir: Path, signum: signal.Signals) -> None:
    process = start(plugin_dir, **{ENV_NAME: "127.0.0.1:7"})
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "1|2|tcp|127.0.0.1:7|grpc\n"
        assert sockets_of(process.pid) == [], "a locator must not listen or connect"
        assert not list((plugin_dir / "sockets").iterdir()), "no unix socket either"
        process.send_signal(signum)
        assert process.wait(10) == -signum
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_locator_leaves_when_grafana_stops_reading(plugin_dir: Path) -> None:
    process = start(plugin_dir, **{ENV_NAME: "127.0.0.1:7"})
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("1|2|tcp|")
        process.stdout.close()
        assert process.wait(5) in (0, -signal.SIGPIPE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_empty_variable_makes_the_plugin_serve_itself(plugin_dir: Path) -> None:
    process = start(plugin_dir, **{ENV_NAME: ""})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("1|2|unix|"), line
        assert line.endswith("|grpc|\n"), line
        assert sockets_of(process.pid), "serving means listening"
    finally:
        process.terminate()
        process.wait(10)
    assert process.stderr is not None
    assert "is set but empty" in process.stderr.read()


def test_without_a_plugin_id_the_variable_cannot_apply(plugin_dir: Path) -> None:
    (plugin_dir / "plugin.json").unlink()
    process = start(plugin_dir, **{ENV_NAME: "127.0.0.1:7"})
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("1|2|unix|")
    finally:
        process.terminate()
        process.wait(10)


def test_tick_interval_is_the_go_sdks() -> None:
    assert locator.TICK_SECONDS == 10.0
