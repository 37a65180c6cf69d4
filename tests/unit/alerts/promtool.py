"""The alerting rules' files, and promtool (from Debian's prometheus package, which
hack/install-deps.sh installs) to check and test them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES_FILE = REPO / "deploy" / "prometheus" / "plugin-operator-rules.yaml"
RULE_TESTS = sorted(Path(__file__).parent.glob("*.test.yaml"))
RUNBOOK = REPO / "docs" / "runbook.md"


def promtool() -> Path:
    """The promtool binary. Missing: a skip on a developer's machine, a failure under CI
    (CI=true), where these tests must run."""
    found = shutil.which("promtool")
    if found is not None:
        return Path(found)
    message = ("promtool is not installed; hack/install-deps.sh installs it (Debian's "
               "prometheus package: apt-get install --no-install-recommends prometheus)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}. CI runs the alerting rules' tests, so it must be there.",
                    pytrace=False)
    pytest.skip(message)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool()), *map(str, args)], capture_output=True, text=True,
                          check=False, cwd=REPO, timeout=300)


def alerting_rules(groups: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alerting rule of a rules file's (or a PrometheusRule's spec's) groups."""
    return [rule for group in groups["groups"] for rule in group["rules"] if "alert" in rule]


def load_rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
    return loaded
