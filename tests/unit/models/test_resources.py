"""Parsing Plugin and DataSourceInstance specs into typed models."""

from __future__ import annotations

from typing import Any

import pytest

from plugin_operator.models.resources import (
    ConfigMapSource,
    ImageSource,
    Mode,
    SecretKeyRef,
    SignaturePolicy,
    SpecError,
    UrlSource,
    WorkloadRef,
    parse_datasource_spec,
    parse_duration,
    parse_plugin_spec,
)

MINIMAL: dict[str, Any] = {"pluginId": "a-b-datasource", "version": "1.0.0",
                           "source": {"url": "https://example.com/a.zip"}}


def test_minimal_plugin_gets_the_crd_defaults() -> None:
    spec = parse_plugin_spec(MINIMAL)
    assert spec.source == UrlSource("https://example.com/a.zip")
    assert spec.mode is Mode.POD
    assert spec.replicas == 1
    assert spec.signature_policy is SignaturePolicy.REQUIRE_VALID
    assert spec.sidecar_target is None


def test_full_plugin_spec() -> None:
    spec = parse_plugin_spec({
        **MINIMAL,
        "source": {"configMapRef": {"name": "cm", "key": "p.zip"}, "sha256": "f" * 64},
        "signature": {"policy": "AllowUnsigned"},
        "mode": "Sidecar",
        "sidecar": {"targetRef": {"kind": "Deployment", "name": "gw"}},
        "replicas": 0,
        "resources": {"limits": {"memory": "128Mi", "cpu": 1}},
        "env": [{"name": "A", "value": "1"}],
        "config": {"log_level": "debug"},
        "app": {"jsonData": {"x": 1},
                "secureJsonDataFrom": {"token": {"secretKeyRef": {"name": "s", "key": "t"}}}},
    })
    assert spec.source == ConfigMapSource("cm", "p.zip", "f" * 64)
    assert spec.sidecar_target == WorkloadRef("Deployment", "gw")
    assert spec.resources == {"limits": {"memory": "128Mi", "cpu": "1"}}
    assert spec.env == (("A", "1"),)
    assert spec.plugin_env() == {"GF_PLUGIN_LOG_LEVEL": "debug"}
    assert spec.app_secure_json_data_from == {"token": SecretKeyRef("s", "t")}


def test_image_source_defaults() -> None:
    spec = parse_plugin_spec({**MINIMAL, "source": {"image": {"reference": "r/p:1"}}})
    assert spec.source == ImageSource("r/p:1", "/plugin", "IfNotPresent")


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"source": {}}, "spec.source", "exactly one of url, configMapRef, image or catalog"),
    ({"source": {"url": "u", "image": {"reference": "r"}}}, "spec.source", "exactly one"),
    ({"source": {"url": "u", "sha256": "abc"}}, "spec.source.sha256", "64 lowercase"),
    ({"source": {"configMapRef": {"name": "cm"}}}, "spec.source.configMapRef.key", "required"),
    ({"mode": "Daemon"}, "spec.mode", "not one of Pod, Sidecar"),
    ({"replicas": 65}, "spec.replicas", "between 0 and 64"),
    ({"replicas": True}, "spec.replicas", "must be int"),
    ({"sidecar": {"targetRef": {"kind": "Deployment", "name": "gw"}}}, "spec.sidecar",
     "only be set when spec.mode is Sidecar"),
    ({"version": ""}, "spec.version", "is required"),
    ({"signature": {"policy": "Trust"}}, "spec.signature.policy", "not one of"),
])
def test_bad_plugin_specs_name_the_field(change: dict[str, Any], field: str,
                                         problem: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_plugin_spec({**MINIMAL, **change})
    assert error.value.field == field
    assert problem in str(error.value)


def test_datasource_spec_defaults_and_secrets() -> None:
    spec = parse_datasource_spec({
        "pluginRef": {"name": "p"}, "uid": "u1",
        "secureJsonDataFrom": {"apiKey": {"secretKeyRef": {"name": "creds", "key": "k"}},
                               "other": {"secretKeyRef": {"name": "creds", "key": "o"}}},
        "healthCheck": {"interval": "1m30s"},
    }, object_name="obj")
    assert spec.name == "obj"
    assert spec.health_check.interval_seconds == 90
    assert spec.health_check.enabled
    assert spec.secret_names() == {"creds"}


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5), ("1h", 3600), ("250ms", 0.25),
                                               ("2m3s", 123)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["", "5", "often", "5 s", "1d"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(SpecError, match="not a duration"):
        parse_duration(text, "spec.healthCheck.interval")
