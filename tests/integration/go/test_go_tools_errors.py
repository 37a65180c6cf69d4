"""Bad input to the Go tools gets a clear error, and nothing is left running."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.go.go_support import BUILD_SCRIPT, GoBuild

pytestmark = pytest.mark.integration


def test_build_script_rejects_an_unknown_target() -> None:
    done = subprocess.run([str(BUILD_SCRIPT), "nope"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert "unknown target 'nope'; use sample-go and/or compat-go" in done.stderr


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("{not json", "is not valid JSON for a plan"),
        (json.dumps({"calls": []}), "the plan needs pluginId"),
        (json.dumps({"pluginId": "x", "calls": [{"call": "dance"}]}),
         'calls[0]: unknown call "dance"'),
        (json.dumps({"pluginId": "x", "calls": [{"call": "query", "format": "xml"}]}),
         'calls[0]: format must be arrow or json, not "xml"'),
    ],
)
def test_grafana_client_rejects_a_bad_plan(go_build: GoBuild, plan: str, message: str) -> None:
    done = subprocess.run([str(go_build.grafana_client), "--plugin", str(go_build.executable),
                           "--plan", "-"], input=plan, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stdout == ""


def test_grafana_client_needs_exactly_one_target(go_build: GoBuild) -> None:
    done = subprocess.run([str(go_build.grafana_client), "--plan", "-"], input="{}",
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "give exactly one of --plugin PATH or --addr HOST:PORT" in done.stderr


def test_grafana_client_reports_a_plugin_that_does_not_start(go_build: GoBuild) -> None:
    plan = json.dumps({"pluginId": "x", "calls": [{"call": "health"}]})
    done = subprocess.run([str(go_build.grafana_client), "--plugin", "/bin/false", "--plan", "-"],
                          input=plan, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "starting plugin /bin/false" in done.stderr
