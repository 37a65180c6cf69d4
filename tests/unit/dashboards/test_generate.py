"""The dashboards in the chart are dashboards/generate.py's output, and ask only for series
that we export (tests/e2e/observability asks a real Prometheus for each)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate

REPO = Path(__file__).resolve().parents[3]
# Where our series are defined: the operator's, gateway's and host's Python, plugin-front's Go.
SOURCES = [*sorted((REPO / "operator" / "plugin_operator").rglob("*.py")),
           REPO / "tools" / "plugin-front" / "metrics.go"]
OUR_SERIES = re.compile(r"\b(plugin_(?:operator|gateway)_[a-z_]+)")
# What Prometheus appends to a counter's or histogram's name.
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _committed() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(generate.OUTPUT.glob("*.json"))}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in _committed().items()}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a row's own


def _expressions(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in _panels(board) for t in p.get("targets", [])]
    found += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_committed_json_is_the_generators() -> None:
    # One source of truth: hack/gen-dashboards.sh rewrites the files from the code.
    assert _committed() == generate.rendered(), "run hack/gen-dashboards.sh"


def test_check_mode_finds_a_stale_file(tmp_path: Path) -> None:
    assert generate.main(["--output", str(tmp_path)]) == 0
    assert generate.main(["--output", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "plugin-operator-fleet.json"
    stale.write_text(stale.read_text().replace("Backend restarts", "Restarts"))
    assert generate.main(["--output", str(tmp_path), "--check"]) == 1


def _defined_series() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        names.update(OUR_SERIES.findall(source.read_text()))
    return names


def _base_name(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def test_every_series_asked_for_is_one_we_define() -> None:
    defined = _defined_series()
    asked = {name for board in _dashboards().values() for expr in _expressions(board)
             for name in OUR_SERIES.findall(expr)}
    assert asked, "no expression names any of our series"
    unknown = sorted(n for n in asked if n not in defined and _base_name(n) not in defined)
    assert not unknown, f"series no code of ours exports: {unknown}"


def test_two_dashboards_with_their_own_uids() -> None:
    boards = _dashboards()
    assert sorted(boards) == ["plugin-operator-fleet.json", "plugin-operator-plugin.json"]
    assert sorted(b["uid"] for b in boards.values()) == [generate.FLEET_UID,
                                                        generate.PLUGIN_UID]


@pytest.mark.parametrize("name", ["plugin-operator-fleet.json", "plugin-operator-plugin.json"])
def test_panels_use_the_chosen_prometheus_and_known_variables(name: str) -> None:
    board = _dashboards()[name]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    panels = [p for p in _panels(board) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, \
            panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert all(ref_ids), panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    for expr in _expressions(board):
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", expr)) - {"__rate_interval"}
        assert used <= variables, f"{expr} uses undefined variables {used - variables}"


def test_the_drill_down_is_templated_by_namespace_and_plugin() -> None:
    board = _dashboards()["plugin-operator-plugin.json"]
    variables = [v["name"] for v in board["templating"]["list"]]
    assert variables[:3] == ["datasource", "namespace", "plugin"]
    for panel in _panels(board):
        for target in panel.get("targets", []):
            assert re.search(r"\$\{?plugin", target["expr"]), \
                f"{panel['title']} is not about one Plugin"
