"""Does a Grafana version satisfy a plugin's ``dependencies.grafanaDependency``?

plugin.json states the Grafana versions a plugin supports as a semver constraint in the
syntax of the Masterminds/semver library Grafana reads it with: comparisons (``>=10.4.0``,
``<12``, ``=11.2.1``, ``!=11.0.0``), caret and tilde ranges (``^11.3``, ``~10.4``), wildcards
(``11.x``, ``*``), hyphen ranges (``10.4 - 11.6``), comparisons joined by spaces or commas
(all must hold) and alternatives joined by ``||`` (one must hold). Prerelease tags of the
Grafana version (``12.3.0-12345``) are ignored, as Grafana compares its release version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plugin_operator.package.plugin_json import PluginJson

_VERSION = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:[-+].*)?$")
_COMPARISON = re.compile(r"^(>=|<=|!=|=>|=<|>|<|=|\^|~>|~)?\s*(.+)$")


class ConstraintError(ValueError):
    """The constraint is not in a syntax Grafana accepts."""


Version = tuple[int, int, int]


def _parse(text: str) -> tuple[list[int | None], int]:
    """The numbers of a partial version (None for a wildcard or a missing part) and how
    many parts were given."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ConstraintError(f"{text!r} is not a version")
    parts = [None if p is None or p in "xX*" else int(p) for p in match.groups()]
    given = sum(p is not None for p in match.groups())
    return parts, given


def parse_version(text: str) -> Version:
    parts, _ = _parse(text)
    if any(p is None for p in parts):
        raise ConstraintError(f"{text!r} is not a full version (major.minor.patch)")
    return parts[0] or 0, parts[1] or 0, parts[2] or 0


def _floor(parts: list[int | None]) -> Version:
    return parts[0] or 0, parts[1] or 0, parts[2] or 0


def _next(parts: list[int | None]) -> Version | None:
    """The first version above a wildcarded one (``11.x`` -> 12.0.0); None for ``*``."""
    if parts[0] is None:
        return None
    if parts[1] is None:
        return parts[0] + 1, 0, 0
    if parts[2] is None:
        return parts[0], parts[1] + 1, 0
    return None  # a full version: no range


def _holds(version: Version, op: str, operand: str) -> bool:
    parts, given = _parse(operand)
    low, high = _floor(parts), _next(parts)
    if op in ("", "="):
        return low <= version and (version < high if high else
                                   parts[0] is None or version == low)
    if op == "!=":
        return not _holds(version, "=", operand)
    if op == ">":
        return version >= high if high else version > low
    if op in (">=", "=>"):
        return version >= low
    if op == "<":
        return version < low
    if op in ("<=", "=<"):
        return version < high if high else version <= low
    if op == "^":  # the leftmost non-zero part stays
        major, minor, patch = low
        if major > 0 or given == 1:
            upper: Version = (major + 1, 0, 0)
        elif minor > 0 or given == 2:
            upper = (0, minor + 1, 0)
        else:
            upper = (0, 0, patch + 1)
        return low <= version < upper
    # ~ and ~>: patch changes only (the minor too when only a major is given)
    upper = (low[0] + 1, 0, 0) if given == 1 else (low[0], low[1] + 1, 0)
    return low <= version < upper


def satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` (Grafana's) meets ``constraint``; an empty one always does.
    Raises ConstraintError for a constraint Grafana would not read."""
    if not constraint.strip():
        return True
    current = parse_version(version)
    alternatives = constraint.split("||")
    if any(not alternative.strip() for alternative in alternatives):
        raise ConstraintError(f"{constraint!r} has an empty alternative")
    for alternative in alternatives:
        text = alternative.strip()
        hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", text)
        if hyphen:
            if _holds(current, ">=", hyphen[1]) and _holds(current, "<=", hyphen[2]):
                return True
            continue
        terms = [t for t in re.split(r"[,\s]+(?=[<>=!^~\dvxX*])", text) if t.strip()]
        if not terms:
            raise ConstraintError(f"{constraint!r} has an empty alternative")
        checks = []
        for term in terms:
            match = _COMPARISON.match(term.strip())
            if not match:
                raise ConstraintError(f"{term!r} in {constraint!r} is not a comparison")
            checks.append(_holds(current, match[1] or "", match[2]))
        if all(checks):
            return True
    return False


@dataclass(frozen=True)
class GrafanaCompatibility:
    """plugin.json's grafanaDependency held against one Grafana version, worded for people."""

    grafana_version: str
    grafana_dependency: str
    compatible: bool
    message: str
    # One CamelCase word: NoConstraint, Compatible, ConstraintUnreadable or
    # GrafanaVersionUnsupported (the reason of the operator's GrafanaCompatible condition).
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"grafanaVersion": self.grafana_version,
                "grafanaDependency": self.grafana_dependency,
                "compatible": self.compatible, "message": self.message}


def check_grafana_dependency(plugin: PluginJson, grafana_version: str) -> GrafanaCompatibility:
    """Whether the plugin is made for ``grafana_version``.

    Grafana's loader never reads grafanaDependency; its installer refuses a version whose
    dependency excludes the running Grafana, with the message used here for an unmet one
    (pkg/plugins/repo/errors.go, ``plugin.versionNotCompatible``). Raises ConstraintError
    when ``grafana_version`` itself is not a version.
    """
    parse_version(grafana_version)
    constraint = plugin.grafana_dependency
    version = plugin.version or "(no version)"
    if not constraint.strip():
        return GrafanaCompatibility(grafana_version, constraint, True,
                                    "plugin.json states no grafanaDependency", "NoConstraint")
    try:
        compatible = satisfies(grafana_version, constraint)
    except ConstraintError as exc:
        return GrafanaCompatibility(
            grafana_version, constraint, False,
            f"{plugin.id} v{version} has a grafanaDependency that cannot be read ({exc}), "
            f"so whether it suits Grafana {grafana_version} is unknown",
            "ConstraintUnreadable")
    if compatible:
        return GrafanaCompatibility(grafana_version, constraint, True,
                                    f"Grafana {grafana_version} meets {constraint!r}",
                                    "Compatible")
    return GrafanaCompatibility(
        grafana_version, constraint, False,
        f"{plugin.id} v{version} is not compatible with your Grafana version: "
        f"{grafana_version} (plugin.json grafanaDependency: {constraint!r})",
        "GrafanaVersionUnsupported")
