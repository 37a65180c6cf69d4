"""Static checks of the CRD manifests: structural, documented, and consistent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.kube import CRDS

CRD_FILES = sorted(CRDS.glob("*.yaml"))


def _schema(path: Any) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from _fields(sub, f"{path}.{name}")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _fields(extra, f"{path}.*")
    if "items" in schema:
        yield from _fields(schema["items"], f"{path}[]")


def test_there_are_three_crds() -> None:
    names = sorted(yaml.safe_load(p.read_text())["metadata"]["name"] for p in CRD_FILES)
    assert names == ["datasourceinstances.plugin-operator.dev",
                     "grafanaattachments.plugin-operator.dev", "plugins.plugin-operator.dev"]


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_every_field_is_described(path: Any) -> None:
    undocumented = [name for name, sub in _fields(_schema(path))
                    if name != ".metadata" and not sub.get("description", "").strip()]
    assert undocumented == []


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_every_field_has_a_type(path: Any) -> None:
    untyped = [name for name, sub in _fields(_schema(path))
               if "type" not in sub and not sub.get("x-kubernetes-int-or-string")]
    assert untyped == []


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_every_validation_rule_has_a_message(path: Any) -> None:
    rules = [(name, rule) for name, sub in _fields(_schema(path))
             for rule in sub.get("x-kubernetes-validations", [])]
    rules += [("(spec)", rule) for rule in
              _schema(path)["properties"]["spec"].get("x-kubernetes-validations", [])]
    assert rules, "expected CEL validation rules"
    assert [name for name, rule in rules if not rule.get("message")] == []


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_status_is_a_subresource_with_a_declared_schema(path: Any) -> None:
    crd = yaml.safe_load(path.read_text())
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    status = _schema(path)["properties"]["status"]
    assert {"conditions", "observedGeneration"} <= set(status["properties"])
    assert crd["spec"]["names"]["categories"] == ["plugin-operator"]
