"""Helpers shared by tests that talk to a real Kubernetes API."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
CRDS = REPO_ROOT / "crds"

@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    kubectl_path: Path

    def kubectl(self, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; raise with its stderr when ``check``."""
        result = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def get_json(self, *args: str) -> dict[str, object]:
        out = self.kubectl("get", "-o", "json", *args).stdout
        data: dict[str, object] = json.loads(out)
        return data
