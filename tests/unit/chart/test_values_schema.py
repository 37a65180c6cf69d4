"""Bad values fail at install time with a message that names the value and what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.chart.conftest import Render
from tests.unit.chart.helm import RenderError

BAD_VALUES: list[tuple[dict[str, Any], list[str]]] = [
    ({"image": {"pullPolicy": "Sometimes"}},
     ["/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"]),
    ({"image": {"tag": "latest"}}, ["image.tag", "latest", "version tag"]),
    ({"plugins": {"namespaces": ["Team_A"]}}, ["/plugins/namespaces/0", "Team_A"]),
    ({"plugins": {"namespaces": ["a", "a"]}}, ["/plugins/namespaces", "are equal"]),
    ({"operator": {"appUrl": "localhost:3000"}}, ["/operator/appUrl", "https?://"]),
    ({"operator": {"backoff": {"max": "5 minutes"}}}, ["/operator/backoff/max", "5 minutes"]),
    ({"operator": {"ports": {"artifacts": 70000}}}, ["/operator/ports/artifacts", "65,535"]),
    ({"gateway": {"replicas": "two"}}, ["/gateway/replicas", "integer"]),
    ({"gateway": {"service": {"type": "Ingress"}}}, ["/gateway/service/type"]),
    ({"operatr": {}}, ["'operatr' not allowed"]),
    ({"operator": {"allowUnsigned": ["x"]}}, ["/operator", "'allowUnsigned' not allowed"]),
    ({"operator": {"trustedKeys": {"inline": {"team.asc": "not a key"}}}},
     ["/operator/trustedKeys/inline/team.asc", "BEGIN PGP PUBLIC KEY BLOCK"]),
    ({"operator": {"trustedKeys": {"existingSecret": "keys"}}},
     ["operator.trustedKeys.keys", "file names"]),
    ({"operator": {"trustedKeys": {"keys": ["team.asc"]}}},
     ["existingSecret or existingConfigMap"]),
    ({"operator": {"trustedKeys": {"existingSecret": "a", "existingConfigMap": "b",
                                   "keys": ["k.asc"]}}}, ["not both"]),
    ({"plugins": {"namespaces": ["plugin-operator"]}},
     ["release namespace", "plugins.createNamespaces=false"]),
]


@pytest.mark.parametrize(("values", "fragments"), BAD_VALUES,
                         ids=[str(v) for v, _ in BAD_VALUES])
def test_bad_values_are_rejected_clearly(render: Render, values: dict[str, Any],
                                         fragments: list[str]) -> None:
    with pytest.raises(RenderError) as error:
        render(values)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_the_release_namespace_may_hold_plugins_when_the_chart_does_not_create_it(
        render: Render) -> None:
    rendered = render({"plugins": {"namespaces": ["plugin-operator"], "createNamespaces": False}})
    assert rendered.all("Namespace") == []
