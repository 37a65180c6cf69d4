"""Which DataSourceInstances refer to a Plugin or a Secret, kept from watch events.

A change to a Plugin or a Secret must reach the DataSourceInstances that use it. The map is
rebuilt from the DataSourceInstances' own watch events (the initial listing included), so it
holds nothing the cluster does not say. It is ours rather than a kopf index: kopf holds
every object's events until all its indexes are complete, which costs quadratic time in the
number of objects when thousands of them arrive at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
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


class ReferenceIndex:
    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], frozenset[Target]] = {}
        self._referrers: defaultdict[Target, set[str]] = defaultdict(set)

    def update(self, namespace: str, name: str, spec: Mapping[str, Any] | None) -> None:
        """Record what the DataSourceInstance refers to now (``None``: it is gone)."""
        key = (namespace, name)
        for target in self._targets.pop(key, frozenset()):
            referrers = self._referrers[target]
            referrers.discard(name)
            if not referrers:
                del self._referrers[target]
        if spec is not None:
            targets = references_of(namespace, spec)
            self._targets[key] = targets
            for target in targets:
                self._referrers[target].add(name)

    def referrers(self, namespace: str, kind: str, name: str) -> frozenset[str]:
        return frozenset(self._referrers.get((namespace, kind, name), ()))
