"""Least-privilege RBAC: what each service account may do, and where."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import NAMESPACE, Manifest, Rendered

GROUP = "plugin-operator.dev"
OPERATOR_SA = "plugin-operator"
GATEWAY_SA = "plugin-operator-gateway"


def _rules_of(rendered: Rendered, service_account: str, namespace: str | None
              ) -> list[dict[str, Any]]:
    """Every rule that applies to ``service_account`` in ``namespace`` (None: cluster scope)."""
    rules: list[dict[str, Any]] = []
    for binding in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding"):
        subjects = [(s["name"], s["namespace"]) for s in binding["subjects"]]
        if (service_account, NAMESPACE) not in subjects:
            continue
        bound_in = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" \
            else None
        if bound_in is not None and bound_in != namespace:
            continue
        role = rendered.get(binding["roleRef"]["kind"], binding["roleRef"]["name"], bound_in)
        rules += role["rules"]
    return rules


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               for r in rules)


OPERATOR_NEEDS = [
    (GROUP, "plugins", "watch"), (GROUP, "plugins", "patch"),
    (GROUP, "datasourceinstances", "watch"), (GROUP, "plugins/status", "patch"),
    (GROUP, "datasourceinstances/status", "patch"), (GROUP, "plugins/finalizers", "update"),
    ("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "watch"),
    ("", "pods", "patch"),
    ("", "services", "create"), ("", "services", "delete"),
    ("", "events", "create"), ("", "events", "patch"),
    ("", "configmaps", "watch"), ("", "secrets", "get"),
    ("apps", "deployments", "patch"), ("apps", "statefulsets", "patch"),
    ("apps", "daemonsets", "patch"),
    # GrafanaAttachments: their status, the provisioning file and the NetworkPolicy.
    (GROUP, "grafanaattachments", "watch"), (GROUP, "grafanaattachments/status", "patch"),
    ("", "configmaps", "patch"), ("", "configmaps", "delete"),
    ("networking.k8s.io", "networkpolicies", "patch"),
    ("networking.k8s.io", "networkpolicies", "delete"),
]
OPERATOR_MUST_NOT = [
    ("", "secrets", "create"), ("", "secrets", "update"), ("", "configmaps", "update"),
    ("networking.k8s.io", "networkpolicies", "update"),
    ("apps", "deployments", "create"), ("apps", "deployments", "delete"),
    (GROUP, "plugins", "create"), (GROUP, "plugins", "delete"), ("", "pods/exec", "create"),
]
GATEWAY_NEEDS = [
    (GROUP, "plugins", "watch"), (GROUP, "datasourceinstances", "watch"),
    ("", "pods", "watch"), ("", "secrets", "watch"),
]
GATEWAY_MUST_NOT = [
    (GROUP, "plugins", "patch"), (GROUP, "datasourceinstances", "update"),
    ("", "pods", "create"), ("", "pods", "delete"), ("", "secrets", "update"),
    ("", "services", "create"), ("apps", "deployments", "patch"),
]


@pytest.mark.parametrize(("group", "resource", "verb"), OPERATOR_NEEDS)
def test_operator_may_in_its_plugin_namespace(render: Render, group: str, resource: str,
                                              verb: str) -> None:
    assert _allowed(_rules_of(render(), OPERATOR_SA, "plugins"), group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verb"), OPERATOR_MUST_NOT)
def test_operator_may_not(render: Render, group: str, resource: str, verb: str) -> None:
    for namespace in ("plugins", NAMESPACE, None, "elsewhere"):
        assert not _allowed(_rules_of(render(), OPERATOR_SA, namespace), group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verb"), GATEWAY_NEEDS)
def test_gateway_may_in_its_plugin_namespace(render: Render, group: str, resource: str,
                                             verb: str) -> None:
    assert _allowed(_rules_of(render(), GATEWAY_SA, "plugins"), group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verb"), GATEWAY_MUST_NOT)
def test_gateway_may_not(render: Render, group: str, resource: str, verb: str) -> None:
    for namespace in ("plugins", NAMESPACE, None):
        assert not _allowed(_rules_of(render(), GATEWAY_SA, namespace), group, resource, verb)


def test_namespaced_release_grants_nothing_namespaced_cluster_wide(render: Render) -> None:
    rendered = render()
    for sa in (OPERATOR_SA, GATEWAY_SA):
        cluster = _rules_of(rendered, sa, None)
        for resource in ("pods", "secrets", "plugins", "services", "deployments"):
            assert not any(resource in r["resources"] for r in cluster), (sa, resource)
        elsewhere = _rules_of(rendered, sa, "elsewhere")
        assert not _allowed(elsewhere, "", "secrets", "get")
        assert not _allowed(elsewhere, "", "pods", "list")


def test_cluster_scoped_needs(render: Render) -> None:
    rendered = render()
    operator = _rules_of(rendered, OPERATOR_SA, None)
    assert _allowed(operator, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert _allowed(operator, "", "namespaces", "watch")
    gateway = _rules_of(rendered, GATEWAY_SA, None)
    assert _allowed(gateway, "authentication.k8s.io", "tokenreviews", "create")
    assert _allowed(gateway, "authorization.k8s.io", "subjectaccessreviews", "create")


def test_in_the_release_namespace_only_sidecar_needs(render: Render) -> None:
    rendered = render()
    operator = _rules_of(rendered, OPERATOR_SA, NAMESPACE)
    assert _allowed(operator, "apps", "deployments", "patch")  # sidecars into the gateway
    assert _allowed(operator, GROUP, "plugins", "list")  # the sidecars targeting it
    assert not _allowed(operator, GROUP, "plugins", "patch")
    assert not _allowed(operator, "", "secrets", "get")
    assert not _allowed(operator, "", "pods", "create")
    gateway = _rules_of(rendered, GATEWAY_SA, NAMESPACE)
    assert _allowed(gateway, "", "pods", "watch")  # its own pod, for sidecar ports
    assert not _allowed(gateway, "", "secrets", "get")


def test_cluster_wide_release_uses_cluster_roles(render: Render) -> None:
    rendered = render({"plugins": {"namespaces": []}})
    assert rendered.all("Role") == []
    for group, resource, verb in OPERATOR_NEEDS:
        assert _allowed(_rules_of(rendered, OPERATOR_SA, None), group, resource, verb)
    for group, resource, verb in GATEWAY_NEEDS:
        assert _allowed(_rules_of(rendered, GATEWAY_SA, None), group, resource, verb)


def test_no_wildcards_anywhere(render: Render) -> None:
    cases: list[dict[str, Any]] = [{}, {"plugins": {"namespaces": []}}]
    for values in cases:
        rendered = render(values)
        for role in rendered.all("Role") + rendered.all("ClusterRole"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], (role["metadata"]["name"], rule)


def test_every_permission_says_what_it_is_for(render: Render) -> None:
    from tests.unit.chart.helm import CHART
    for template in ("_rbac-rules.tpl", "rbac.yaml", "user-roles.yaml"):
        lines = (CHART / "templates" / template).read_text().splitlines()
        for index, line in enumerate(lines):
            if line.lstrip().startswith("- apiGroups:"):
                before = [x.strip() for x in lines[max(0, index - 12):index]]
                # a comment above the rule, or above its role (rules: line follows it)
                assert any(x.startswith("#") for x in before), f"{template}:{index + 1}"


def _role(rendered: Rendered, name: str) -> Manifest:
    return rendered.get("ClusterRole", name)


def test_user_roles(render: Render) -> None:
    rendered = render()
    querier = _role(rendered, "plugin-operator-datasource-querier")["rules"]
    assert _allowed(querier, GROUP, "datasourceinstances", "query")
    assert not _allowed(querier, GROUP, "datasourceinstances", "update")
    assert _allowed(_role(rendered, "plugin-operator-plugin-user")["rules"], GROUP, "plugins",
                    "query")
    viewer = _role(rendered, "plugin-operator-viewer")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    editor = _role(rendered, "plugin-operator-editor")
    assert not _allowed(editor["rules"], GROUP, "plugins/status", "patch")
    assert render({"rbac": {"userRoles": False}}).all("ClusterRole") == [
        r for r in rendered.all("ClusterRole") if not r["metadata"]["name"].startswith(
            ("plugin-operator-datasource", "plugin-operator-plugin-user", "plugin-operator-viewer",
             "plugin-operator-editor"))]
