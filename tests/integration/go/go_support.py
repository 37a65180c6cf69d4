"""Helpers shared by the Go protocol tests: build outputs, the grafana-client runner's
result type, plan builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "hack" / "build-sample-go.sh"
PYTHON_SAMPLE = REPO / "plugins" / "testdata-python"
# The Python sample's launcher runs the python3 first on PATH, which must have our package.
VENV_BIN = REPO / ".venv" / "bin"
GO_PLUGIN_ID = "plugin-operator-sample-go-datasource"
PYTHON_PLUGIN_ID = "plugin-operator-testdata-datasource"
# A fixed hour, so the number of points a random walk returns is known.
FROM_MS, TO_MS = 1_700_000_000_000, 1_700_003_600_000


@dataclass(frozen=True)
class GoBuild:
    dist: Path
    zip: Path
    grafana_client: Path
    frame_json_bench: Path

    @property
    def executable(self) -> Path:
        return self.dist / "gpx_sample_go_linux_amd64"


@dataclass(frozen=True)
class ClientRun:
    """grafana-client's JSON summary and what it logged (including the plugin's stderr)."""

    summary: dict[str, Any]
    stderr: str

    @property
    def results(self) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self.summary["results"]
        return results

    @property
    def plugin(self) -> dict[str, Any] | None:
        """How a launched plugin ended (None when the client dialled an address)."""
        plugin: dict[str, Any] | None = self.summary.get("plugin")
        return plugin


ClientRunner = Callable[..., ClientRun]


def datasource(json_data: Mapping[str, Any] | None = None,
               secure: Mapping[str, str] | None = None, uid: str = "ds1") -> dict[str, Any]:
    return {"id": 1, "uid": uid, "name": "sample", "jsonData": dict(json_data or {}),
            "secureJsonData": dict(secure or {}), "lastUpdatedMS": 1_700_000_000_000}


def query(*queries: dict[str, Any], fmt: str = "arrow", **extra: Any) -> dict[str, Any]:
    """A QueryData call over the fixed hour."""
    return {"call": "query", "format": fmt, "fromMs": FROM_MS, "toMs": TO_MS,
            "queries": list(queries), **extra}


def process_gone(pid: int) -> bool:
    """True when pid no longer runs (a zombie counts as gone: it runs no code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def fields(frame: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in frame["fields"]}
