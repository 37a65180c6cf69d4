"""plugin.json's grafanaDependency, read as Grafana reads it (Masterminds/semver syntax)."""

from __future__ import annotations

import pytest

from plugin_operator.package.grafana_dependency import (
    ConstraintError,
    check_grafana_dependency,
    satisfies,
)
from plugin_operator.package.plugin_json import PluginJson, parse_plugin_json


@pytest.mark.parametrize(("version", "constraint", "expected"), [
    ("12.3.0", "", True),
    ("12.3.0", ">=10.4.0", True),
    ("12.0.0", ">=12.3.0", False),
    ("12.3.0", ">=12.3.0", True),
    ("12.3.0-98765", ">=12.3.0", True),  # Grafana's build suffix is not a prerelease here
    ("11.6.2", ">=10.4.0 <12", True),
    ("12.0.0", ">=10.4.0 <12", False),
    ("12.0.0", ">=10.4.0, <12.0.0", False),
    ("11.2.0", "^11.1", True),
    ("12.0.0", "^11.1", False),
    ("0.2.5", "^0.2.3", True),
    ("0.3.0", "^0.2.3", False),
    ("10.4.9", "~10.4.1", True),
    ("10.5.0", "~10.4", False),
    ("11.9.0", "~11", True),
    ("11.7.1", "11.x", True),
    ("12.0.0", "11.x", False),
    ("12.0.0", "*", True),
    ("11.0.0", "10.4 - 11.6", True),
    ("11.7.0", "10.4 - 11.6", False),
    ("11.6.3", "10.4 - 11.6", True),  # 11.6 as an upper end means all of 11.6
    ("9.5.0", ">=10.0.0 || 9.5.x", True),
    ("9.4.0", ">=10.0.0 || 9.5.x", False),
    ("11.0.0", "!=11.0.0", False),
    ("11.0.1", "!=11.0.0", True),
    ("12.1.0", ">12", False),
    ("13.0.0", ">12", True),
    ("12.9.9", "<=12", True),
])
def test_constraints(version: str, constraint: str, expected: bool) -> None:
    assert satisfies(version, constraint) is expected


@pytest.mark.parametrize("constraint", ["banana", ">= 1.2.3.4.5", ">=10 ||"])
def test_unreadable_constraints_are_errors(constraint: str) -> None:
    with pytest.raises(ConstraintError):
        satisfies("12.0.0", constraint)


def _plugin(constraint: str, version: str = "2.0.0") -> PluginJson:
    return parse_plugin_json({"id": "acme-test-datasource", "type": "datasource",
                              "info": {"version": version},
                              "dependencies": {"grafanaDependency": constraint}})


def test_an_unmet_dependency_is_worded_as_grafanas_installer_words_it() -> None:
    result = check_grafana_dependency(_plugin(">=13.0.0"), "12.3.0")

    assert not result.compatible
    assert result.message.startswith(
        "acme-test-datasource v2.0.0 is not compatible with your Grafana version: 12.3.0")
    assert "'>=13.0.0'" in result.message
    assert result.as_dict() == {"grafanaVersion": "12.3.0", "grafanaDependency": ">=13.0.0",
                                "compatible": False, "message": result.message}


@pytest.mark.parametrize("constraint", ["", ">=12.0.0 <13", "^12.1"])
def test_a_met_or_absent_dependency_is_compatible(constraint: str) -> None:
    assert check_grafana_dependency(_plugin(constraint), "12.3.0").compatible


def test_an_unreadable_dependency_is_not_taken_as_compatible() -> None:
    result = check_grafana_dependency(_plugin("whenever"), "12.3.0")

    assert not result.compatible
    assert "cannot be read" in result.message


def test_the_grafana_version_itself_must_be_a_version() -> None:
    with pytest.raises(ConstraintError):
        check_grafana_dependency(_plugin(">=10.0.0"), "latest")
