"""The pod index: a pass reads its Plugin's pods here instead of a LIST, so what it reads
must never be less than what exists. Our own writes count at once, late words about a pod
gone or replaced under its name change nothing, and the index follows the pods' label."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from plugin_operator.controller import pod_index
from plugin_operator.controller.pod_index import PodIndex
from plugin_operator.controller.watch_cache import TRUST_ANSWER_SECONDS
from plugin_operator.models import naming

NS = "plugins"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, version: str, uid: str = "u1", plugin: str | None = "ds",
        phase: str = "Running", deleting: bool = False, **status: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid,
                                "resourceVersion": version,
                                "labels": {} if plugin is None
                                else {naming.LABEL_PLUGIN: plugin}}
    if deleting:
        metadata["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"kind": "Pod", "metadata": metadata, "spec": {"containers": [{"name": "x"}]},
            "status": {"phase": phase, **status}}


async def listed(index: PodIndex, plugin: str = "ds") -> dict[str, tuple[str, str]]:
    """name -> (uid, phase) of the Plugin's pods in the index."""
    return {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["phase"])
            for p in await index.pods(NS, plugin)}


class FakeKube:
    """Answers a LIST of backend pods in pages of one, at ``version``."""

    def __init__(self, pods: list[dict[str, Any]], version: str) -> None:
        self.items, self.version = pods, version
        self.paths: list[str] = []
        self.fail = 0

    async def pages(self, path: str, *, label_selector: str | None = None,
                    field_selector: str | None = None
                    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        assert label_selector == naming.LABEL_PLUGIN
        self.paths.append(path)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("apiserver away")
        for item in self.items:
            yield [item], self.version


async def filled(kube: FakeKube, clock: Clock | None = None) -> PodIndex:
    index = PodIndex(clock or Clock())
    await index._list(kube, NS)  # type: ignore[arg-type]
    index._listed.set()
    return index


async def test_passes_wait_for_the_first_list_then_read_without_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_index, "RETRY_SECONDS", 0.01)
    kube = FakeKube([pod("ds-a-0", "10")], "12")
    kube.fail = 1
    index = PodIndex(Clock())
    index.seen(pod("ds-a-1", "13", uid="u2"))  # the watch, ahead of the LIST: kept too
    reader = asyncio.create_task(listed(index))
    keeper = asyncio.create_task(index.keep_listed(kube, (NS,)))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert not reader.done()
    try:
        # The first LIST fails and is tried again.
        async with asyncio.timeout(10):
            found = await reader
        assert found == {"ds-a-0": ("u1", "Running"), "ds-a-1": ("u2", "Running")}
    finally:
        keeper.cancel()
    assert kube.paths == [f"/api/v1/namespaces/{NS}/pods"] * 2


async def test_our_create_counts_at_once_and_older_events_do_not_hide_it() -> None:
    index = await filled(FakeKube([pod("ds-a-0", "10", uid="old")], "10"))
    # The old pod is deleted (it failed) and the replica created again under its name; the
    # watch still has the old pod's last events to deliver.
    index.deleted(NS, "ds-a-0", "old", None)
    index.answered(pod("ds-a-0", "20", uid="new", phase="Pending"))
    assert await listed(index) == {"ds-a-0": ("new", "Pending")}
    index.seen(pod("ds-a-0", "15", uid="old", phase="Failed", deleting=True))
    index.seen(pod("ds-a-0", "16", uid="old", phase="Failed", deleting=True), deleted=True)
    assert await listed(index) == {"ds-a-0": ("new", "Pending")}
    index.seen(pod("ds-a-0", "20", uid="new", phase="Pending"))
    index.seen(pod("ds-a-0", "21", uid="new", phase="Running"))
    assert await listed(index) == {"ds-a-0": ("new", "Running")}


async def test_a_create_after_the_watch_told_of_the_old_pods_end_counts_at_once() -> None:
    index = await filled(FakeKube([pod("ds-a-0", "10", uid="old")], "10"))
    index.seen(pod("ds-a-0", "16", uid="old", phase="Failed"), deleted=True)
    index.answered(pod("ds-a-0", "20", uid="new", phase="Pending"))
    assert await listed(index) == {"ds-a-0": ("new", "Pending")}


async def test_a_deleted_pod_is_not_brought_back_by_a_late_answer() -> None:
    clock = Clock()
    index = await filled(FakeKube([pod("ds-a-0", "10")], "10"), clock)
    index.seen(pod("ds-a-0", "12", deleting=True))
    index.seen(pod("ds-a-0", "13", deleting=True), deleted=True)
    index.answered(pod("ds-a-0", "11"))  # our restart-count patch, answered late
    index.seen(pod("ds-a-0", "12", deleting=True))  # and a repeated watch event
    assert await listed(index) == {}


async def test_a_list_slower_than_a_deletion_does_not_bring_the_pod_back() -> None:
    clock = Clock()
    index = await filled(FakeKube([], "1"), clock)
    index.seen(pod("ds-a-0", "5"))
    slow = FakeKube([pod("ds-a-0", "5"), pod("ds-a-1", "5", uid="u2")], "5")
    pages = slow.pages

    async def deleted_meanwhile(path: str, **selectors: str | None
                                ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        index.seen(pod("ds-a-0", "6"), deleted=True)
        clock.now += TRUST_ANSWER_SECONDS + 1  # the tombstone expires before the page
        async for page in pages(path, **selectors):
            yield page

    slow.pages = deleted_meanwhile  # type: ignore[method-assign]
    await index._list(slow, NS)  # type: ignore[arg-type]
    assert set(await listed(index)) == {"ds-a-1"}


async def test_our_deletions_show_at_once() -> None:
    index = await filled(FakeKube([pod("ds-a-0", "10", uid="a"), pod("ds-a-1", "10", uid="b"),
                                   pod("ds-a-2", "10", uid="c")], "10"))
    # A graceful deletion answers with the pod, terminating: it keeps its name meanwhile.
    index.deleted(NS, "ds-a-0", "a", pod("ds-a-0", "11", uid="a", deleting=True))
    # An answer with no pod in it (a Status), or none at all (it was gone): gone.
    index.deleted(NS, "ds-a-1", "b", {"kind": "Status", "status": "Success",
                                      "details": {"name": "ds-a-1", "uid": "b"}})
    index.deleted(NS, "ds-a-2", "c", None)
    held = await index.pods(NS, "ds")
    assert [p["metadata"]["name"] for p in held] == ["ds-a-0"]
    assert held[0]["metadata"]["deletionTimestamp"]
    index.seen(pod("ds-a-1", "10", uid="b"))  # the watch is behind: b is known gone
    assert [p["metadata"]["name"] for p in await index.pods(NS, "ds")] == ["ds-a-0"]


async def test_the_index_follows_labels_and_deletions() -> None:
    index = await filled(FakeKube([], "1"))
    assert index.seen(pod("p-0", "5", plugin="a")) == {"a"}
    assert index.seen(pod("p-1", "5", uid="u2", plugin="a")) == {"a"}
    assert set(await listed(index, "a")) == {"p-0", "p-1"}
    # Relabelled: both Plugins' passes are due, and the pod moves.
    assert index.seen(pod("p-0", "6", plugin="b")) == {"a", "b"}
    assert set(await listed(index, "a")) == {"p-1"}
    assert set(await listed(index, "b")) == {"p-0"}
    # The label taken off: it leaves its Plugin, as it would leave a LIST.
    assert index.holds(NS, "p-0")
    assert index.seen(pod("p-0", "7", plugin=None)) == {"b"}
    assert not index.holds(NS, "p-0")
    assert await listed(index, "b") == {}
    assert index.seen(pod("p-1", "8", uid="u2", plugin="a"), deleted=True) == {"a"}
    assert await listed(index, "a") == {}
    assert index._names == {}  # nothing left behind for Plugins without pods


async def test_a_pod_is_kept_without_its_spec() -> None:
    index = await filled(FakeKube([pod("ds-a-0", "10")], "10"))
    assert "spec" not in (await index.pods(NS, "ds"))[0]


async def test_a_list_again_drops_what_went_unreported_and_keeps_what_is_newer() -> None:
    kube = FakeKube([pod("ds-a-0", "10", uid="a"), pod("ds-a-1", "10", uid="b")], "10")
    index = await filled(kube)
    index.answered(pod("ds-a-2", "31", uid="c"))  # created after the next LIST's snapshot
    # ds-a-1 went while the watch was away; ds-a-0 changed meanwhile.
    kube.items, kube.version = [pod("ds-a-0", "25", uid="a", phase="Failed")], "30"
    await index._list(kube, NS)  # type: ignore[arg-type]
    assert await listed(index) == {"ds-a-0": ("a", "Failed"), "ds-a-2": ("c", "Running")}
    # A LIST whose versions cannot be ordered drops nothing.
    kube.items, kube.version = [], "opaque"
    await index._list(kube, NS)  # type: ignore[arg-type]
    assert set(await listed(index)) == {"ds-a-0", "ds-a-2"}
