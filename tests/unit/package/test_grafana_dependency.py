"""plugin.json's grafanaDependency, read as Grafana reads it (Masterminds/semver syntax)."""

from __future__ import annotations

import pytest

from plugin_operator.package.grafana_dependency import ConstraintError, satisfies


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
