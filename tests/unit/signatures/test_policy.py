"""Load policy and Angular detection: who may load, and the error code when not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plugin_operator.package.grafana_dependency import GrafanaCompatibility
from plugin_operator.package.plugin_json import parse_plugin_json
from plugin_operator.signatures import (
    ErrorCode,
    LoadPolicy,
    SignatureResult,
    SignatureStatus,
    VerifyConfig,
    decide,
    evaluate,
)
from plugin_operator.signatures.angular import detect_angular, detect_angular_in
from plugin_operator.signatures.keys import TrustedKeys
from plugin_operator.signatures.policy import package_allowed
from plugin_operator.signatures.signing import sign_plugin

PLUGIN = parse_plugin_json({"id": "acme-test-datasource", "type": "datasource",
                            "info": {"version": "1.0.0"}})


@pytest.mark.parametrize(("status", "allowed", "code"), [
    (SignatureStatus.VALID, True, None),
    (SignatureStatus.INTERNAL, True, None),
    (SignatureStatus.UNSIGNED, False, ErrorCode.SIGNATURE_MISSING),
    (SignatureStatus.INVALID, False, ErrorCode.SIGNATURE_INVALID),
    (SignatureStatus.MODIFIED, False, ErrorCode.SIGNATURE_MODIFIED),
])
def test_default_policy(status: SignatureStatus, allowed: bool, code: ErrorCode | None) -> None:
    decision = decide(SignatureResult(status, reason="because"), PLUGIN, LoadPolicy())

    assert (decision.allowed, decision.error_code) == (allowed, code)
    if not allowed:
        assert "acme-test-datasource" in decision.message


def test_unsigned_allowed_only_for_listed_ids() -> None:
    unsigned = SignatureResult(SignatureStatus.UNSIGNED)

    assert decide(unsigned, PLUGIN, LoadPolicy(frozenset({"acme-test-datasource"}))).allowed
    refused = decide(unsigned, PLUGIN, LoadPolicy(frozenset({"acme-other-datasource"})))
    assert refused.error_code is ErrorCode.SIGNATURE_MISSING
    assert "--allow-unsigned acme-test-datasource" in refused.message


@pytest.mark.parametrize("status", [SignatureStatus.INVALID, SignatureStatus.MODIFIED])
def test_invalid_and_modified_can_never_be_allowed(status: SignatureStatus) -> None:
    policy = LoadPolicy(frozenset({"acme-test-datasource"}), development=True)

    assert not decide(SignatureResult(status), PLUGIN, policy).allowed


@pytest.mark.parametrize("source", [
    b"class MyCtrl extends PanelCtrl {}", b"export { ConfigCtrl };",
    b"require('app/plugins/sdk')", b"if (angular.isNumber(x))", b"ctrl.annotation.name",
    b"QueryCtrl: 'QueryCtrl'", b'{"QueryCtrl"}'])
def test_angular_markers(source: bytes) -> None:
    assert detect_angular(source) is not None


def test_react_plugin_is_not_angular() -> None:
    assert detect_angular(b"import { QueryEditor } from './QueryCtrl.tsx'; QueryCtrl = 1") is None


def test_angular_is_refused_after_a_valid_signature() -> None:
    decision = decide(SignatureResult(SignatureStatus.VALID), PLUGIN, LoadPolicy(), "PanelCtrl")

    assert (decision.allowed, decision.error_code) == (False, ErrorCode.ANGULAR)
    assert "PanelCtrl" in decision.message


def test_signature_error_wins_over_angular() -> None:
    decision = decide(SignatureResult(SignatureStatus.MODIFIED), PLUGIN, LoadPolicy(), "PanelCtrl")

    assert decision.error_code is ErrorCode.SIGNATURE_MODIFIED


def test_evaluate_refuses_signed_angular_plugin(make_plugin: Callable[..., Path],
                                                signing_key: Any,
                                                trusted: TrustedKeys) -> None:
    plugin = make_plugin(files={"module.js": b"define(['app/plugins/sdk'], function(sdk) {})"})
    sign_plugin(plugin, signing_key, root_urls=["http://localhost:3000/"])

    verdicts = evaluate(plugin, VerifyConfig(trusted_keys=trusted))

    assert verdicts[0].verification.signature.status is SignatureStatus.VALID
    assert verdicts[0].decision.error_code is ErrorCode.ANGULAR
    assert not package_allowed(verdicts)


@pytest.mark.parametrize("source", [
    # Patterns Grafana dropped for false positives: a React plugin may contain them.
    b"const template = 'partials/editor.html';",
    b"const injector = getLegacyAngularInjector();",
    b"System.register(['react'], function (exports) {})",
    b"import { config } from 'grafana/app/core/config';",
    b"if (components.QueryCtrl) { render(); }",
])
def test_patterns_grafana_no_longer_uses_do_not_count(source: bytes) -> None:
    assert detect_angular(source) is None


@pytest.mark.parametrize(("source", "marker"), [
    (b"import { MetricsPanelCtrl } from 'grafana/app/plugins/sdk';", "PanelCtrl"),
    (b'define(["app/plugins/sdk", "lodash"], function (sdk, _) {})', "app/plugins/sdk"),
    (b"exports_1('QueryCtrl', ctrl_1.MyQueryCtrl);", "'QueryCtrl'"),
])
def test_the_first_pattern_in_grafanas_order_is_reported(source: bytes, marker: str) -> None:
    assert detect_angular(source) == marker


def test_a_folder_named_module_js_is_not_angular(tmp_path: Path) -> None:
    (tmp_path / "module.js").mkdir()

    assert detect_angular_in(tmp_path) is None


def test_an_incompatible_grafana_is_a_warning_even_on_refusal() -> None:
    incompatible = GrafanaCompatibility("12.3.0", ">=13", False, "not for this Grafana")
    refuse = LoadPolicy(grafana_version="12.3.0", refuse_incompatible_grafana=True)

    warned = decide(SignatureResult(SignatureStatus.VALID), PLUGIN, LoadPolicy(),
                    compatibility=incompatible)
    modified = decide(SignatureResult(SignatureStatus.MODIFIED), PLUGIN, refuse,
                      compatibility=incompatible)
    refused = decide(SignatureResult(SignatureStatus.VALID), PLUGIN, refuse,
                     compatibility=incompatible)

    assert (warned.allowed, warned.warnings) == (True, ("not for this Grafana",))
    assert (modified.error_code, modified.warnings) == (ErrorCode.SIGNATURE_MODIFIED,
                                                        ("not for this Grafana",))
    assert (refused.allowed, refused.error_code) == (False, ErrorCode.VERSION_NOT_COMPATIBLE)
    assert refused.message.startswith("not for this Grafana. Install a version")


def test_the_grafana_version_is_checked_only_when_configured(
        make_plugin: Callable[..., Path], signing_key: Any, trusted: TrustedKeys) -> None:
    plugin = make_plugin()
    data = json.loads((plugin / "plugin.json").read_text())
    data["dependencies"] = {"grafanaDependency": ">=99.0.0"}
    (plugin / "plugin.json").write_text(json.dumps(data))
    sign_plugin(plugin, signing_key, root_urls=["http://localhost:3000/"])
    config = VerifyConfig(trusted_keys=trusted)

    [unchecked] = evaluate(plugin, config)
    [checked] = evaluate(plugin, config, LoadPolicy(grafana_version="12.3.0",
                                                    refuse_incompatible_grafana=True))

    assert (unchecked.compatibility, unchecked.decision.allowed) == (None, True)
    assert checked.compatibility is not None
    assert not checked.compatibility.compatible
    assert checked.decision.error_code is ErrorCode.VERSION_NOT_COMPATIBLE
