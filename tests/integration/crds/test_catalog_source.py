"""spec.source.catalog on a real kube-apiserver: what admission accepts and refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.kube import ControlPlane

pytestmark = pytest.mark.integration


def _plugin(name: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "plugin-operator.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name},
            "spec": {"pluginId": "myorg-example-datasource", "source": source, **spec}}


def _apply(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    result = plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj),
                           check=False)
    return result.returncode, result.stderr


@pytest.mark.parametrize("obj", [
    _plugin("latest", {"catalog": {"version": "latest"}}),
    _plugin("named", {"catalog": {"version": "1.2.3",
                                  "url": "https://mirror.example.com/api/plugins"}}),
    _plugin("from-spec", {"catalog": {}}, version="1.2.3"),
    _plugin("both", {"catalog": {"version": "1.2.3"}, "sha256": "a" * 64}, version="1.2.3"),
], ids=lambda obj: obj["metadata"]["name"])
def test_catalog_sources_are_accepted(crds: ControlPlane, namespace: str,
                                      obj: dict[str, Any]) -> None:
    code, stderr = _apply(crds, namespace, obj)
    assert code == 0, stderr


@pytest.mark.parametrize(("obj", "message"), [
    (_plugin("no-version", {"catalog": {}}), "spec.version is required (only a catalog"),
    (_plugin("no-version-url", {"url": "https://example.com/p.zip"}),
     "spec.version is required"),
    (_plugin("contradiction", {"catalog": {"version": "latest"}}, version="1.2.3"),
     "spec.source.catalog.version contradicts spec.version"),
    (_plugin("newest", {"catalog": {"version": "newest"}}),
     "must be latest or a semantic version"),
    (_plugin("file-url", {"catalog": {"version": "1.2.3", "url": "file:///etc"}}),
     "spec.source.catalog.url must be an http:// or https:// URL"),
    (_plugin("two", {"catalog": {"version": "1.2.3"}, "url": "https://example.com/p.zip"}),
     "must set exactly one of url, configMapRef, image or catalog"),
], ids=lambda value: value["metadata"]["name"] if isinstance(value, dict) else "")
def test_unusable_catalog_sources_are_refused(crds: ControlPlane, namespace: str,
                                              obj: dict[str, Any], message: str) -> None:
    code, stderr = _apply(crds, namespace, obj)
    assert code != 0, "the apiserver accepted an unusable catalog source"
    assert message in stderr, stderr


def test_the_resolved_version_is_kept_in_status(crds: ControlPlane, namespace: str) -> None:
    code, stderr = _apply(crds, namespace, _plugin("p", {"catalog": {"version": "latest"}}))
    assert code == 0, stderr
    crds.kubectl("patch", "-n", namespace, "plugin", "p", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {"artifact": {
                     "sha256": "a" * 64, "catalogVersion": "1.4.0"}}}))
    status = crds.get_json("-n", namespace, "plugin", "p")["status"]
    assert status["artifact"]["catalogVersion"] == "1.4.0"  # type: ignore[index]
