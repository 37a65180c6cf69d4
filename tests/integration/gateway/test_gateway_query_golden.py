"""Our /api/ds/query bodies against the Go SDK's own encoding of the same plugin answers
(tests/compat-go/cmd/query-json decodes them as Grafana does and writes Grafana's JSON)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.gateway import query
from plugin_operator.protocol.frames import Field, FieldType, Frame, frame_to_arrow, frame_to_json
from plugin_operator.protocol.models import FrameFormat

pytestmark = pytest.mark.integration
BUILD = Path(__file__).resolve().parents[3] / "hack" / "build-sample-go.sh"
FRAME = Frame("walk", [Field.of("time", FieldType.INT64, [1, 2]),
                       Field.of("value", FieldType.FLOAT64, [0.5, 1.5])], ref_id="A")
CASES: list[dict[str, dict[str, Any]]] = [
    {"A": {"status": 200, "format": "json", "frames": []}},
    {"A": {"status": 200, "format": "json", "frames": [frame_to_json(FRAME)]}},
    {"A": {"status": 0, "format": "json", "frames": []}},
    {"A": {"status": 700, "format": "json", "frames": []}},
    {"A": {"status": 400, "error": "bad query", "errorSource": "downstream", "format": "json",
           "frames": []},
     "B": {"status": 0, "error": "no status", "format": "arrow", "frames": []}},
    {"A": {"status": 200, "format": "arrow", "frames": [frame_to_arrow(FRAME)]}},
]


@pytest.fixture(scope="session")
def query_json() -> Path:
    built = subprocess.run([str(BUILD), "compat-go"], capture_output=True, text=True,
                           timeout=1800, check=False)
    assert built.returncode == 0, built.stderr
    out = dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)
    return Path(out["GRAFANA_CLIENT"]).parent / "query-json"


def ours(case: dict[str, dict[str, Any]]) -> bytes:
    return query.encode_results({ref: query.result_from_response(
        r["frames"], FrameFormat.JSON if r["format"] == "json" else FrameFormat.ARROW,
        r.get("error", ""), r["status"], r.get("errorSource", "")) for ref, r in case.items()})


def test_query_bodies_match_the_go_sdk(query_json: Path) -> None:
    wire = [{ref: {**r, "frames": [base64.b64encode(f).decode() for f in r["frames"]]}
             for ref, r in case.items()} for case in CASES]
    ran = subprocess.run([str(query_json)], input=json.dumps(wire), capture_output=True,
                         text=True, timeout=60, check=True)
    for case, grafana in zip(CASES, json.loads(ran.stdout), strict=True):
        mine = ours(case)
        if not any(r["frames"] for r in case.values()):
            assert mine == grafana.encode(), case  # byte for byte
        # Frames: the same JSON (the SDK re-encodes what it decoded; we splice).
        assert json.loads(mine) == json.loads(grafana), case
