"""Render the chart with the real Helm binary and look at the objects it produces."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "plugin-operator"
KUBE_VERSION = "v1.33.13"
RELEASE = "plugin-operator"
NAMESPACE = "plugin-operator"

Manifest = dict[str, Any]


def build_helm() -> Path:
    """The cached Helm of hack/build-components.sh (built from the Go module proxy once)."""
    result = subprocess.run([str(REPO / "hack" / "build-components.sh"), "helm"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"building helm failed:\n{result.stderr}"
    helm = Path(result.stdout.strip().splitlines()[-1]) / "helm"
    assert helm.is_file(), f"hack/build-components.sh helm printed no directory with helm: {helm}"
    return helm


class RenderError(Exception):
    """helm refused the values; the message is what the user would see."""


@dataclass(frozen=True)
class Rendered:
    objects: list[Manifest]

    def all(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name
                 and (namespace is None or o["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {name} in {namespace}, found {len(found)}"
        return found[0]

    def containers(self) -> Iterator[tuple[str, Manifest]]:
        for deployment in self.all("Deployment"):
            spec = deployment["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield deployment["metadata"]["name"], container


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                              check=False, cwd=REPO)

    def render(self, values: dict[str, Any] | None = None, *, tmp: Path,
               api_versions: Sequence[str] = (), namespace: str = NAMESPACE,
               include_crds: bool = False) -> Rendered:
        values_file = tmp / "values.json"
        values_file.write_text(json.dumps(values or {}))
        args = ["template", RELEASE, str(CHART), "--namespace", namespace,
                "--kube-version", KUBE_VERSION, "--values", str(values_file)]
        args += [f"--api-versions={v}" for v in api_versions]
        if include_crds:
            args.append("--include-crds")
        result = self.run(*args)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return Rendered(objects)
