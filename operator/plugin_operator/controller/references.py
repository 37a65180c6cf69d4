"""Which objects refer to which, kept from watch events: DataSourceInstances to their Plugin
and Secrets, Plugins to the ConfigMap that holds their archive.

A change to a Plugin or a Secret must reach the DataSourceInstances that use it, and a new
archive in a ConfigMap the Plugins it holds. The maps are rebuilt from the referring
objects' own watch events (the initial listing included), so they hold nothing the cluster
does not say. It is ours rather than a kopf index: kopf holds
every object's events until all its indexes are complete, which costs quadratic time in the
number of objects when thousands of them arrive at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

# (namespace, kind, name) of a referenced object
Target = tuple[str, str, str]


def references_of(namespace: str, spec: Mapping[str, Any]) -> frozenset[Target]:
    plugin = (spec.get("pluginRef") or {}).get("name")
    targets = {(namespace, "Plugin", plugin)} if plugin else set()
    for ref in (spec.get("secureJsonDataFrom") or {}).values():
        secret = (ref.get("secretKeyRef") or {}).get("name") if isinstance(ref, Mapping) \
            else None
        if secret:
            targets.add((namespace, "Secret", secret))
    return frozenset(targets)


def archive_references(namespace: str, spec: Mapping[str, Any]) -> frozenset[Target]:
    """A Plugin's ``spec.source.configMapRef``."""
    ref = (spec.get("source") or {}).get("configMapRef")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return frozenset({(namespace, "ConfigMap", name)}) if isinstance(name, str) and name \
        else frozenset()


class ReferenceIndex:
    def __init__(self, references: Callable[[str, Mapping[str, Any]], frozenset[Target]]
                 = references_of) -> None:
        """``references``: what an object's spec refers to (a DataSourceInstance's, unless
        told otherwise)."""
        self._references = references
        self._targets: dict[tuple[str, str], frozenset[Target]] = {}
        self._referrers: defaultdict[Target, set[str]] = defaultdict(set)

    def update(self, namespace: str, name: str, spec: Mapping[str, Any] | None) -> None:
        """Record what the object refers to now (``None``: it is gone)."""
        key = (namespace, name)
        for target in self._targets.pop(key, frozenset()):
            referrers = self._referrers[target]
            referrers.discard(name)
            if not referrers:
                del self._referrers[target]
        if spec is not None:
            targets = self._references(namespace, spec)
            self._targets[key] = targets
            for target in targets:
                self._referrers[target].add(name)

    def referrers(self, namespace: str, kind: str, name: str) -> frozenset[str]:
        return frozenset(self._referrers.get((namespace, kind, name), ()))
