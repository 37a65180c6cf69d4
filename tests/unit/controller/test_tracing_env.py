"""Where plugin backends send their own spans: the operator's tracing settings and the
GF_INSTANCE_OTLP_* variables Grafana gives its plugins, in backend pods and sidecars."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from plugin_operator.controller.config import ConfigError, OperatorConfig, load_config
from plugin_operator.controller.podspec import (
    Artifact,
    PluginRef,
    Sidecar,
    backend_pod,
    sidecar_apply_patch,
    spec_hash,
)
from plugin_operator.controller.tracing import TracingSettings, plugin_env
from plugin_operator.models.resources import parse_plugin_spec

ARTIFACT = Artifact("a" * 64, 1000)
REF = PluginRef("plugins", "sample", "uid-1")
SPEC = parse_plugin_spec({"pluginId": "sample-datasource", "version": "1.0.0",
                          "source": {"url": "https://example.com/s.zip"},
                          "env": [{"name": "A", "value": "1"}]})
TRACED = OperatorConfig(tracing=TracingSettings(otlp_address="tempo.monitoring.svc:4317"))
# As Grafana's envvars.go writes them, the sampler parameter with %.6f.
GRAFANAS = {"GF_INSTANCE_OTLP_ADDRESS": "tempo.monitoring.svc:4317",
            "GF_INSTANCE_OTLP_PROPAGATION": "",
            "GF_INSTANCE_OTLP_SAMPLER_TYPE": "const",
            "GF_INSTANCE_OTLP_SAMPLER_PARAM": "0.000000",
            "GF_INSTANCE_OTLP_SAMPLER_REMOTE_URL": ""}


def _env(container: dict[str, object]) -> list[tuple[str, str]]:
    env = container["env"]
    assert isinstance(env, list)
    return [(e["name"], e["value"]) for e in env if "value" in e]


def test_plugins_are_told_nothing_unless_an_address_is_set() -> None:
    assert plugin_env(TracingSettings()) == []
    pod = backend_pod(REF, SPEC, ARTIFACT, OperatorConfig(), 0)
    assert _env(pod["spec"]["containers"][0]) == [("A", "1")]


def test_backend_pods_get_grafanas_variables() -> None:
    pod = backend_pod(REF, SPEC, ARTIFACT, TRACED, 0)
    assert _env(pod["spec"]["containers"][0]) == [*GRAFANAS.items(), ("A", "1")]
    settings = TracingSettings(otlp_address="10.0.0.9:4317", propagation="w3c,jaeger",
                               sampler_type="probabilistic", sampler_param=0.25,
                               sampler_remote_url="http://sampler:5778/sampling")
    assert dict(plugin_env(settings)) == {
        "GF_INSTANCE_OTLP_ADDRESS": "10.0.0.9:4317",
        "GF_INSTANCE_OTLP_PROPAGATION": "w3c,jaeger",
        "GF_INSTANCE_OTLP_SAMPLER_TYPE": "probabilistic",
        "GF_INSTANCE_OTLP_SAMPLER_PARAM": "0.250000",
        "GF_INSTANCE_OTLP_SAMPLER_REMOTE_URL": "http://sampler:5778/sampling"}


def test_sidecars_get_them_too() -> None:
    patch = sidecar_apply_patch("Deployment", "gw", "gateway",
                                [Sidecar("sample", SPEC, ARTIFACT, 0)], TRACED)
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert dict(_env(container)) == {**GRAFANAS, "A": "1"}


def test_a_plugins_own_env_wins_and_no_name_comes_twice() -> None:
    opted_out = parse_plugin_spec({"pluginId": "sample-datasource", "version": "1.0.0",
                                   "source": {"url": "https://example.com/s.zip"},
                                   "env": [{"name": "GF_INSTANCE_OTLP_ADDRESS", "value": ""}]})
    env = _env(backend_pod(REF, opted_out, ARTIFACT, TRACED, 0)["spec"]["containers"][0])
    names = [name for name, _ in env]
    assert len(names) == len(set(names))
    assert dict(env)["GF_INSTANCE_OTLP_ADDRESS"] == ""


def test_pods_roll_when_tracing_changes_and_only_then() -> None:
    plain = spec_hash(SPEC, ARTIFACT, OperatorConfig())
    # Off is the hash pods had before tracing existed.
    assert spec_hash(SPEC, ARTIFACT, OperatorConfig(tracing=TracingSettings(
        sampler_type="probabilistic", sampler_param=0.5))) == plain
    traced = spec_hash(SPEC, ARTIFACT, TRACED)
    assert traced != plain
    sampled = replace(TRACED, tracing=replace(TRACED.tracing, sampler_param=1.0))
    assert spec_hash(SPEC, ARTIFACT, sampled) not in (plain, traced)


def test_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tracing:\n  otlpAddress: tempo.monitoring.svc:4317\n"
                    "  propagation: w3c\n  samplerType: probabilistic\n  samplerParam: 0.1\n")
    config = load_config(path, environ={"PLUGIN_OPERATOR_TRACING_SAMPLER_PARAM": "0.5"})
    assert config.tracing == TracingSettings("tempo.monitoring.svc:4317", "w3c",
                                             "probabilistic", 0.5, "")
    assert load_config(None, environ={}).tracing == TracingSettings()
    # Empty values are settings too (the chart writes every key).
    path.write_text("tracing: {otlpAddress: '', propagation: '', samplerRemoteUrl: ''}\n")
    assert not load_config(path, environ={}).tracing.enabled


@pytest.mark.parametrize(("content", "message"), [
    ("tracing: {otlpAddress: 'http://tempo:4317'}", "host:port"),
    ("tracing: {otlpAddress: tempo}", "host:port"),
    ("tracing: {propagation: b3}", "w3c, jaeger"),
    ("tracing: {samplerType: always}", "'const'"),
    ("tracing: {samplerParam: -1}", "negative"),
    ("tracing: {samplerParam: lots}", "number"),
    ("tracing: {samplerParam: 0.5}", "0 or 1"),
    ("tracing: {samplerType: probabilistic, samplerParam: 2}", "at most 1"),
    ("tracing: {samplerRemoteUrl: sampler:5778}", "URL"),
])
def test_settings_the_sdk_would_refuse_are_refused_here(tmp_path: Path, content: str,
                                                        message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})
