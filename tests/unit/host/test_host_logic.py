import logging

import pytest

from plugin_operator.host.handshake import (
    HandshakeError,
    parse_handshake_line,
    plugin_environment,
)
from plugin_operator.host.logs import parse_plugin_line
from plugin_operator.host.termination import (
    MAX_MESSAGE_BYTES,
    describe_exit,
    host_exit_code,
    termination_message,
)


def test_handshake_line_like_go_plugin() -> None:
    hs = parse_handshake_line("1|2|unix|/tmp/plugin1|grpc|\n")
    assert (hs.network, hs.address, hs.app_version) == ("unix", "/tmp/plugin1", 2)
    assert parse_handshake_line("1|2|tcp|127.0.0.1:1234|grpc").network == "tcp"


@pytest.mark.parametrize(("line", "message"), [
    ("hello", "unrecognized handshake line"),
    ("2|2|unix|/x|grpc|", "core protocol"),
    ("1|1|unix|/x|grpc|", "version '1' not supported"),
    ("1|2|udp|/x|grpc|", "neither unix nor tcp"),
    ("1|2|unix|/x", "netrpc"),
])
def test_bad_handshake_lines_are_explained(line: str, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        parse_handshake_line(line)


def test_environment_order_and_settings() -> None:
    env = plugin_environment({"GF_PLUGIN_A": "host", "grafana_plugin_type": "x"},
                             grafana_version="12.1.0", settings={"a": "ini", "b_c": "2",
                                                                 "path": "/p"})
    assert env["GF_PLUGIN_A"] == "host"  # the host's variable wins, like Grafana
    assert env["GF_PLUGIN_B_C"] == "2"
    assert "GF_PLUGIN_PATH" not in env
    assert env["grafana_plugin_type"] == "datasource"
    assert env["PLUGIN_PROTOCOL_VERSIONS"] == "2"
    assert env["GF_VERSION"] == "12.1.0"
    with pytest.raises(ValueError, match="may only hold"):
        plugin_environment({}, grafana_version="1", settings={"bad key": "x"})


def test_hclog_and_plain_lines() -> None:
    record = parse_plugin_line('{"@level":"warn","@message":"m","@module":"x","k":1}', "stderr")
    assert (record.level, record.message, record.fields["k"]) == (logging.WARNING, "m", 1)
    assert parse_plugin_line("[ERROR] bad", "stderr").level == logging.ERROR
    assert parse_plugin_line("panic: oops", "stderr").level == logging.ERROR
    assert parse_plugin_line("{not json", "stdout").level == logging.DEBUG


def test_termination_message_fits_kubernetes_and_keeps_newest_lines() -> None:
    lines = [f"line {i} " + "x" * 100 for i in range(200)]
    message = termination_message("plugin p exited with code 3", lines)
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert message.startswith("plugin p exited with code 3")
    assert message.endswith(lines[-1])
    assert describe_exit(-9) == "killed by SIGKILL"
    assert host_exit_code(0) == 1
    assert host_exit_code(-9) == 137
    assert host_exit_code(3) == 3
