"""The operator's settings file and environment, with errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin_operator.controller.config import ConfigError, load_config


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    empty = tmp_path / "config.yaml"
    empty.write_text("")
    config = load_config(empty, environ={})
    assert config.namespaces == ()
    assert config.backoff.initial == 1.0
    assert config.backoff.max == 300.0


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("namespaces: [plugins]\nappUrl: https://grafana.example.com/\n"
                    "allowUnsignedPlugins: [dev-datasource]\nbackoff: {initial: 500ms, max: 2m}\n"
                    "artifacts: {port: 9000}\n")
    config = load_config(path, environ={"PLUGIN_OPERATOR_BACKOFF_MAX": "90s",
                                        "PLUGIN_OPERATOR_TRUSTED_KEYS": "/k/a.asc, /k/b.asc"})
    assert config.namespaces == ("plugins",)
    assert config.app_url == "https://grafana.example.com/"
    assert config.allow_unsigned_plugins == ("dev-datasource",)
    assert config.backoff.initial == 0.5
    assert config.backoff.max == 90.0
    assert config.artifacts_port == 9000
    assert config.trusted_keys == (Path("/k/a.asc"), Path("/k/b.asc"))


def test_artifact_mirrors_and_bound(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("artifacts: {mirrors: [http://gw.ns.svc:8001], maxBytes: 1048576}\n")
    config = load_config(path, environ={})
    assert config.artifacts_mirrors == ("http://gw.ns.svc:8001",)
    assert config.artifacts_max_bytes == 1048576
    assert load_config(None, environ={"PLUGIN_OPERATOR_ARTIFACTS_MIRRORS": "http://a, http://b"}
                       ).artifacts_mirrors == ("http://a", "http://b")
    path.write_text("artifacts: {mirrors: [gw.ns.svc]}\n")
    with pytest.raises(ConfigError, match="list of http:// or https:// URLs"):
        load_config(path, environ={})


@pytest.mark.parametrize(("content", "environ", "message"), [
    ("colour: blue\n", {}, "unknown setting 'colour'"),
    ("metricsPort: 70000\n", {}, "metricsPort (from"),
    ("", {"PLUGIN_OPERATOR_BACKOFF_MAX": "soon"}, "backoff.max (from PLUGIN_OPERATOR_BACKOFF_MAX)"
     " must be a duration"),
    ("appUrl: grafana.local\n", {}, "must be an http:// or https:// URL"),
    ("imagePullPolicy: Sometimes\n", {}, "must be Always, IfNotPresent or Never"),
    ("backoff: {initial: 10m, max: 1m}\n", {}, "must not exceed backoff.max"),
    ("namespaces: plugins\n", {}, "must be a list of strings"),
    ("- a\n- b\n", {}, "must hold a mapping of settings"),
    ("a: [\n", {}, "is not valid YAML"),
])
def test_bad_settings_are_refused_clearly(tmp_path: Path, content: str,
                                          environ: dict[str, str], message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ=environ)
    assert message in str(error.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "absent.yaml", environ={})
