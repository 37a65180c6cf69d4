"""The map from Plugins and Secrets to the DataSourceInstances that use them."""

from __future__ import annotations

from plugin_operator.controller.references import ReferenceIndex, archive_references


def spec(plugin: str, *secrets: str) -> dict[str, object]:
    return {"pluginRef": {"name": plugin},
            "secureJsonDataFrom": {f"k{i}": {"secretKeyRef": {"name": s, "key": "v"}}
                                   for i, s in enumerate(secrets)}}


def test_referrers_follow_updates_and_deletions() -> None:
    index = ReferenceIndex()
    index.update("ns", "a", spec("p", "s1", "s2"))
    index.update("ns", "b", spec("p", "s2"))
    assert index.referrers("ns", "Plugin", "p") == {"a", "b"}
    assert index.referrers("ns", "Secret", "s2") == {"a", "b"}
    assert index.referrers("other", "Plugin", "p") == set()

    index.update("ns", "a", spec("q"))  # a moved to another plugin and dropped its secrets
    assert index.referrers("ns", "Plugin", "p") == {"b"}
    assert index.referrers("ns", "Plugin", "q") == {"a"}
    assert index.referrers("ns", "Secret", "s1") == set()

    index.update("ns", "b", None)
    assert index.referrers("ns", "Plugin", "p") == set()
    assert index.referrers("ns", "Secret", "s2") == set()


def test_malformed_references_are_ignored() -> None:
    index = ReferenceIndex()
    index.update("ns", "a", {"secureJsonDataFrom": {"x": "not-a-mapping", "y": {}}})
    assert index.referrers("ns", "Secret", "not-a-mapping") == set()


def test_plugins_are_indexed_by_the_configmap_holding_their_archive() -> None:
    index = ReferenceIndex(archive_references)
    index.update("ns", "a", {"source": {"configMapRef": {"name": "archive", "key": "p.zip"}}})
    index.update("ns", "b", {"source": {"url": "https://example.com/p.zip"}})
    assert index.referrers("ns", "ConfigMap", "archive") == {"a"}
    index.update("ns", "a", {"source": {"catalog": {"version": "latest"}}})
    assert index.referrers("ns", "ConfigMap", "archive") == set()
