"""grafana-client starts plugins with the environment Grafana builds (docs/grafana-facts.md):
GF_VERSION, GF_PLUGIN_<KEY> per [plugin.<id>] key, Grafana's own environment only when
Grafana forwards it, and go-plugin's handshake variables. A fake plugin records what it got.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.samples import build_sample_go

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
PLUGIN_ID = "myorg-env-datasource"


@pytest.fixture(scope="module")
def client() -> Path:
    return build_sample_go("compat-go")["GRAFANA_CLIENT"]


def started_env(client: Path, tmp_path: Path, *flags: str,
                host: dict[str, str] | None = None) -> dict[str, str]:
    """Launch a fake plugin that writes its environment and exits; return that environment."""
    (tmp_path / "env.raw").unlink(missing_ok=True)
    plugin = tmp_path / "gpx_env_linux_amd64"
    plugin.write_text("#!/bin/sh\n/usr/bin/env -0 > " + str(tmp_path / "env.raw") + "\nexit 1\n")
    plugin.chmod(0o755)
    plan = json.dumps({"pluginId": PLUGIN_ID, "calls": []})
    done = subprocess.run([str(client), "--plugin", str(plugin), "--plan", "-", *flags],
                          input=plan, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(host or {})})
    assert done.returncode == 1, done.stderr  # the fake never completes a handshake
    raw = (tmp_path / "env.raw").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)


def test_grafana_12_4_passes_settings_but_not_its_environment(client: Path,
                                                              tmp_path: Path) -> None:
    env = started_env(client, tmp_path, "--grafana-version", "12.4.0",
                      "--plugin-setting", "grpc_address_myorg_env_datasource=10.0.0.7:10000",
                      "--plugin-setting", "path=/ignored", "--plugin-setting", "mode=ini",
                      host={"HTTPS_PROXY": "http://proxy:3128", "SECRET_OF_GRAFANA": "x",
                            "GF_PLUGIN_MODE": "from-grafanas-env"})
    assert env.pop("GF_VERSION") == "12.4.0"
    assert env.pop("GF_PLUGIN_GRPC_ADDRESS_MYORG_ENV_DATASOURCE") == "10.0.0.7:10000"
    assert env.pop("GF_PLUGIN_MODE") == "from-grafanas-env"  # Grafana's own value wins
    assert env.pop("HTTPS_PROXY") == "http://proxy:3128"  # permitted host variable
    env.pop("PWD", None)  # the shell running the fake sets it
    # Whatever else is left is go-plugin's handshake, or host variables Grafana permits.
    permitted = {"PLUGIN_UNIX_SOCKET_DIR", "HTTP_PROXY", "http_proxy", "https_proxy",
                 "NO_PROXY", "no_proxy"}
    handshake = {"grafana_plugin_type": "datasource", "PLUGIN_PROTOCOL_VERSIONS": "2",
                 "PLUGIN_MIN_PORT": "10000", "PLUGIN_MAX_PORT": "25000"}
    assert {k: v for k, v in env.items() if k not in permitted} == handshake


@pytest.mark.parametrize(("flags", "forwarded"), [
    (["--grafana-version", "12.3.0"], True),
    (["--grafana-version", "12.3.0", "--forward-host-env=false"], False),
    (["--grafana-version", "12.4.0", "--forward-host-env-vars", f"other,{PLUGIN_ID}"], True),
    (["--grafana-version", "12.4.0", "--forward-host-env-vars", "other"], False),
    (["--grafana-version", "13.0.0", "--forward-host-env"], True),
])
def test_grafanas_environment_reaches_the_plugin_only_when_grafana_forwards_it(
        client: Path, tmp_path: Path, flags: list[str], forwarded: bool) -> None:
    env = started_env(client, tmp_path, *flags, host={"SECRET_OF_GRAFANA": "x"})
    assert ("SECRET_OF_GRAFANA" in env) is forwarded
    assert env["GF_VERSION"] == flags[1]


def test_the_harness_go_tests_pass() -> None:
    done = subprocess.run(["go", "test", "./cmd/grafana-client/"], cwd=REPO / "tests" / "compat-go",
                          capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "GOFLAGS": "-mod=readonly"})
    assert done.returncode == 0, done.stdout + done.stderr
