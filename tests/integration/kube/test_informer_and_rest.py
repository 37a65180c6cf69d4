"""plugin_operator.kube.informer and plugin_operator.kube.rest against a real kube-apiserver.

The informer is consumed the way the gateway consumes it (RESYNC replaces the collection,
the other events change one object), into a cache that is compared with what kubectl sees.
Every wait polls with a deadline, and stops at once if the informer's consumer died, so a
broken informer fails with its own exception rather than a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin_operator.kube.client import api_client, connection_settings
from plugin_operator.kube.informer import (
    Collection,
    EventType,
    GoneError,
    Informer,
    WatchEvent,
)
from plugin_operator.kube.rest import (
    ApiError,
    ConflictError,
    KubeApi,
    NotFoundError,
    core_path,
    group_path,
)
from plugin_operator.models.resources import API_VERSION, DATASOURCE_PLURAL
from tests.support.kube import ControlPlane

pytestmark = pytest.mark.integration

DEADLINE = 30.0  # seconds; every wait in this file is bounded by it


# --- helpers ------------------------------------------------------------------------------


async def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    """kubectl in a thread, so the informers under test keep reading meanwhile."""
    result = await asyncio.to_thread(plane.kubectl, *args, stdin=stdin)
    return result.stdout


async def kubectl_objects(plane: ControlPlane, namespace: str, kind: str,
                          *selectors: str) -> dict[str, dict[str, Any]]:
    out = await kubectl(plane, "get", kind, "-n", namespace, "-o", "json", *selectors)
    return {item["metadata"]["name"]: item for item in json.loads(out)["items"]}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def versions(objects: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {name: str(obj["metadata"]["resourceVersion"]) for name, obj in objects.items()}


def configmap(name: str, data: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": dict(data or {})}


class EventLog:
    """Consumes an informer in a task: every event in order, and the cache they build."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.events: list[WatchEvent] = []
        self.cache: dict[str, Mapping[str, Any]] = {}
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.informer.events():
            self.events.append(event)
            if event.type is EventType.RESYNC:
                self.cache = {name_of(obj): obj for obj in event.objects}
            elif event.type is EventType.DELETED:
                self.cache.pop(name_of(event.object), None)
            else:
                self.cache[name_of(event.object)] = event.object

    @property
    def resyncs(self) -> list[WatchEvent]:
        return [e for e in self.events if e.type is EventType.RESYNC]

    def changes(self, *names: str) -> list[tuple[EventType, str]]:
        """(type, name) of every non-RESYNC event, optionally only for ``names``."""
        return [(e.type, name_of(e.object)) for e in self.events
                if e.type is not EventType.RESYNC and (not names or name_of(e.object) in names)]

    async def until(self, predicate: Callable[[], bool], what: str,
                    seconds: float = DEADLINE) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not predicate():
            if self.task.done():
                exc = None if self.task.cancelled() else self.task.exception()
                raise AssertionError(f"the informer stopped while waiting until {what}: "
                                     f"{exc!r}") from exc
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {seconds}s waiting until {what}; "
                                     f"events so far: {self.changes()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def logs() -> AsyncIterator[list[EventLog]]:
    """EventLogs appended here are stopped when the test ends."""
    started: list[EventLog] = []
    yield started
    for log in started:
        await log.stop()


def follow(logs: list[EventLog], informer: Informer) -> EventLog:
    log = EventLog(informer)
    logs.append(log)
    return log


def configmaps(namespace: str, **selectors: str) -> Collection:
    return Collection("/api/v1", "configmaps", namespace, **selectors)


async def assert_cache_matches_kubectl(log: EventLog, plane: ControlPlane, namespace: str,
                                       *selectors: str) -> None:
    seen = await kubectl_objects(plane, namespace, "configmaps", *selectors)
    assert versions(log.cache) == versions(seen)
    for name, obj in seen.items():
        assert log.cache[name].get("data") == obj.get("data")
        assert log.cache[name]["metadata"].get("labels") == obj["metadata"].get("labels")


# --- the informer: list, then watch -----------------------------------------------------------


async def test_initial_list_then_changes_in_order(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    plane = control_plane
    await kubectl(plane, "create", "configmap", "pre-a", "-n", namespace, "--from-literal=k=a")
    await kubectl(plane, "create", "configmap", "pre-b", "-n", namespace, "--from-literal=k=b")
    listed_before = await kubectl_objects(plane, namespace, "configmaps")

    log = follow(logs, Informer(api, configmaps(namespace)))
    await log.until(lambda: bool(log.resyncs), "the initial list arrived")
    first = log.events[0]
    assert first.type is EventType.RESYNC
    assert first.object == {}
    assert versions({name_of(o): o for o in first.objects}) == versions(listed_before)
    assert {"pre-a", "pre-b"} <= set(log.cache)
    assert log.cache["pre-a"]["data"] == {"k": "a"}
    assert all(o["kind"] == "ConfigMap" for o in first.objects)

    await kubectl(plane, "create", "configmap", "x", "-n", namespace, "--from-literal=k=x")
    await kubectl(plane, "label", "configmap", "x", "-n", namespace, "color=blue")
    await kubectl(plane, "patch", "configmap", "pre-b", "-n", namespace, "--type=merge",
                  "-p", json.dumps({"data": {"k": "b2"}}))
    await kubectl(plane, "delete", "configmap", "pre-a", "-n", namespace)
    await log.until(lambda: "pre-a" not in log.cache, "the deletion arrived")

    assert log.changes() == [(EventType.ADDED, "x"), (EventType.MODIFIED, "x"),
                             (EventType.MODIFIED, "pre-b"), (EventType.DELETED, "pre-a")]
    added, labelled, patched, deleted = (e.object for e in log.events[1:])
    assert added["metadata"].get("labels") is None
    assert labelled["metadata"]["labels"] == {"color": "blue"}
    assert patched["data"] == {"k": "b2"}
    assert deleted["data"] == {"k": "a"}  # the object as it was when deleted
    for event in log.events[1:]:
        assert event.object["kind"] == "ConfigMap"
        assert event.object["metadata"]["namespace"] == namespace
        assert event.objects == ()
    assert len(log.resyncs) == 1
    await assert_cache_matches_kubectl(log, plane, namespace)


async def test_listed_objects_look_like_watched_ones(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    await kubectl(control_plane, "create", "configmap", "listed", "-n", namespace)
    log = follow(logs, Informer(api, configmaps(namespace)))
    await log.until(lambda: "listed" in log.cache, "the list arrived")
    await kubectl(control_plane, "create", "configmap", "watched", "-n", namespace)
    await log.until(lambda: "watched" in log.cache, "the watch event arrived")
    listed, watched = log.cache["listed"], log.cache["watched"]
    assert (listed.get("apiVersion"), listed.get("kind")) == \
        (watched.get("apiVersion"), watched.get("kind")) == ("v1", "ConfigMap")


async def test_a_custom_resource_collection(
        api: KubeApi, crds: ControlPlane, namespace: str, logs: list[EventLog]) -> None:
    path = group_path(API_VERSION, namespace, DATASOURCE_PLURAL)
    await api.create(path, datasource("before"))
    log = follow(logs, Informer(api, Collection(f"/apis/{API_VERSION}", DATASOURCE_PLURAL,
                                                namespace)))
    await log.until(lambda: "before" in log.cache, "the list arrived")
    assert log.cache["before"]["kind"] == "DataSourceInstance"
    assert log.cache["before"]["apiVersion"] == API_VERSION
    await api.create(path, datasource("after"))
    await api.merge_patch(f"{path}/after/status", {"status": {"settingsVersion": 7}})
    await log.until(lambda: log.cache.get("after", {}).get("status") == {"settingsVersion": 7},
                    "the status change arrived")
    assert log.changes() == [(EventType.ADDED, "after"), (EventType.MODIFIED, "after")]


# --- the informer: expiry, resumption, dropped connections -----------------------------------


async def test_a_watch_from_a_too_old_version_is_gone(api: KubeApi, namespace: str) -> None:
    informer = Informer(api, configmaps(namespace))
    await informer._list()
    assert informer.resource_version.isdigit()
    informer.resource_version = "1"  # long compacted away: "too old resource version"

    async def first_event() -> WatchEvent | None:
        async for event in informer._watch():
            return event
        return None

    with pytest.raises(GoneError):
        await asyncio.wait_for(first_event(), DEADLINE)


class ExpiringInformer(Informer):
    """Its first watch waits for ``release``, then starts from a version that is too old, as
    if the informer had been away for longer than the apiserver keeps history."""

    def __init__(self, api: KubeApi, collection: Collection) -> None:
        super().__init__(api, collection)
        self.release = asyncio.Event()
        self.watches = 0

    async def _watch(self) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        if self.watches == 1:
            await self.release.wait()
            self.resource_version = "1"
        async for event in super()._watch():
            yield event


async def test_an_expired_watch_relists_without_losing_or_duplicating(
        api: KubeApi, control_plane: ControlPlane, namespace: str, logs: list[EventLog],
        caplog: pytest.LogCaptureFixture) -> None:
    plane = control_plane
    caplog.set_level(logging.INFO, logger="plugin_operator.kube.informer")
    for name in ("keep", "change", "remove"):
        await api.create(core_path(namespace, "configmaps"), configmap(name, {"v": "1"}))
    informer = ExpiringInformer(api, configmaps(namespace))
    log = follow(logs, informer)
    await log.until(lambda: len(log.resyncs) == 1, "the first list arrived")
    assert set(log.cache) == {"keep", "change", "remove"}

    # Changes the informer never sees as events: its watch has not started yet.
    await api.create(core_path(namespace, "configmaps"), configmap("new", {"v": "1"}))
    await api.merge_patch(core_path(namespace, "configmaps", "change"), {"data": {"v": "2"}})
    await api.delete(core_path(namespace, "configmaps", "remove"))
    informer.release.set()

    await log.until(lambda: len(log.resyncs) == 2, "the relist after 410 Gone arrived")
    assert log.changes() == []
    assert set(log.cache) == {"keep", "change", "new"}
    assert log.cache["change"]["data"] == {"v": "2"}
    assert any("expired; relisting" in r.getMessage() for r in caplog.records)
    await assert_cache_matches_kubectl(log, plane, namespace)

    # The watch goes on from the relist: later changes arrive once each.
    await api.create(core_path(namespace, "configmaps"), configmap("later", {"v": "1"}))
    await api.delete(core_path(namespace, "configmaps", "keep"))
    await log.until(lambda: "keep" not in log.cache, "the later changes arrived")
    assert log.changes() == [(EventType.ADDED, "later"), (EventType.DELETED, "keep")]
    assert len(log.resyncs) == 2
    assert informer.watches == 2
    await assert_cache_matches_kubectl(log, plane, namespace)


class CountingInformer(Informer):
    def __init__(self, api: KubeApi, collection: Collection, watch_window: int) -> None:
        super().__init__(api, collection, watch_window=watch_window)
        self.watches = 0

    async def _watch(self) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        async for event in super()._watch():
            yield event


async def test_watches_that_end_are_resumed_without_relisting(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    # The apiserver ends each watch after one second; the informer starts the next from the
    # last version it saw, so nothing is listed again, repeated or missed.
    informer = CountingInformer(api, configmaps(namespace), watch_window=1)
    log = follow(logs, informer)
    await log.until(lambda: bool(log.resyncs), "the list arrived")
    path = core_path(namespace, "configmaps")
    await api.create(path, configmap("a", {"v": "1"}))
    await log.until(lambda: "a" in log.cache, "a was added")
    watches = informer.watches
    await log.until(lambda: informer.watches >= watches + 2, "two watches ended")
    await api.merge_patch(core_path(namespace, "configmaps", "a"), {"data": {"v": "2"}})
    await api.create(path, configmap("b"))
    await log.until(lambda: "b" in log.cache, "b was added")
    watches = informer.watches
    await log.until(lambda: informer.watches >= watches + 2, "two more watches ended")
    await api.delete(core_path(namespace, "configmaps", "a"))
    await log.until(lambda: "a" not in log.cache, "a was deleted")
    assert log.changes() == [(EventType.ADDED, "a"), (EventType.MODIFIED, "a"),
                             (EventType.ADDED, "b"), (EventType.DELETED, "a")]
    assert len(log.resyncs) == 1
    await assert_cache_matches_kubectl(log, control_plane, namespace)


class CuttableProxy:
    """A TCP forwarder to the apiserver whose open connections can be cut, as a network
    blip or an apiserver restart would cut them."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.connections.append((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def cut(self) -> int:
        cut = 0
        for client, upstream in self.connections:
            if not client.transport.is_closing():
                cut += 1
            client.transport.abort()
            upstream.transport.abort()
        self.connections.clear()
        return cut

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_dropped_watch_connection_is_resumed(
        control_plane: ControlPlane, namespace: str, logs: list[EventLog]) -> None:
    kubeconfig = str(control_plane.kubeconfig)
    server, _, _, _ = connection_settings(kubeconfig)
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    proxy_port = await proxy.start()
    direct = await api_client(kubeconfig)
    proxied = await api_client(kubeconfig)
    proxied.server = f"https://127.0.0.1:{proxy_port}"  # the serving cert names 127.0.0.1
    try:
        log = follow(logs, Informer(proxied, configmaps(namespace)))
        await log.until(lambda: bool(log.resyncs), "the list arrived")
        path = core_path(namespace, "configmaps")
        await direct.create(path, configmap("before-cut"))
        await log.until(lambda: "before-cut" in log.cache, "the first object arrived")
        assert proxy.cut() >= 1
        await direct.create(path, configmap("after-cut"))
        await log.until(lambda: "after-cut" in log.cache, "the watch resumed")
        assert log.changes() == [(EventType.ADDED, "before-cut"),
                                 (EventType.ADDED, "after-cut")]
        assert len(log.resyncs) == 1
    finally:
        await proxy.close()
        await direct.close()
        await proxied.close()


BIG = 600 * 1024  # over aiohttp's 512 KiB line limit, well under the 1 MiB ConfigMap limit


async def test_a_large_object_in_the_initial_list(
        api: KubeApi, namespace: str, logs: list[EventLog]) -> None:
    await api.create(core_path(namespace, "configmaps"), configmap("big", {"blob": "x" * BIG}))
    log = follow(logs, Informer(api, configmaps(namespace)))
    await log.until(lambda: "big" in log.cache, "the list arrived")
    assert len(log.cache["big"]["data"]["blob"]) == BIG


async def test_a_large_object_in_a_watch_event(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    log = follow(logs, Informer(api, configmaps(namespace)))
    await log.until(lambda: bool(log.resyncs), "the list arrived")
    path = core_path(namespace, "configmaps")
    await api.create(path, configmap("big", {"blob": "x" * BIG}))
    await api.create(path, configmap("small"))
    await log.until(lambda: "small" in log.cache, "the events after the big one arrived")
    assert log.changes() == [(EventType.ADDED, "big"), (EventType.ADDED, "small")]
    assert len(log.cache["big"]["data"]["blob"]) == BIG


# --- the informer: selectors ------------------------------------------------------------------


async def test_a_label_selector(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    path = core_path(namespace, "configmaps")
    await api.create(path, configmap("in-1", labels={"team": "a"}))
    await api.create(path, configmap("out-1", labels={"team": "b"}))
    await api.create(path, configmap("out-2"))
    log = follow(logs, Informer(api, configmaps(namespace, label_selector="team=a")))
    await log.until(lambda: bool(log.resyncs), "the list arrived")
    assert set(log.cache) == {"in-1"}

    await api.create(path, configmap("out-3", labels={"team": "b"}))
    await api.merge_patch(f"{path}/out-1", {"data": {"ignored": "yes"}})
    await api.merge_patch(f"{path}/out-2", {"metadata": {"labels": {"team": "a"}}})  # joins
    await api.merge_patch(f"{path}/in-1", {"metadata": {"labels": {"team": "c"}}})  # leaves
    await api.delete(f"{path}/out-3")
    await api.create(path, configmap("in-2", labels={"team": "a"}))
    await log.until(lambda: "in-2" in log.cache, "the last matching object arrived")
    # Objects that do not match give no events; joining is ADDED, leaving is DELETED.
    assert log.changes() == [(EventType.ADDED, "out-2"), (EventType.DELETED, "in-1"),
                             (EventType.ADDED, "in-2")]
    await assert_cache_matches_kubectl(log, control_plane, namespace, "-l", "team=a")


async def test_a_field_selector(
        api: KubeApi, control_plane: ControlPlane, namespace: str,
        logs: list[EventLog]) -> None:
    path = core_path(namespace, "configmaps")
    await api.create(path, configmap("other"))
    log = follow(logs, Informer(api, configmaps(namespace,
                                                field_selector="metadata.name=chosen")))
    await log.until(lambda: bool(log.resyncs), "the list arrived")
    assert log.cache == {}
    await api.create(path, configmap("chosen", {"v": "1"}))
    await api.merge_patch(f"{path}/other", {"data": {"v": "2"}})
    await api.merge_patch(f"{path}/chosen", {"data": {"v": "2"}})
    await api.delete(f"{path}/chosen")
    await api.create(path, configmap("another"))
    await api.create(path, configmap("chosen", {"v": "again"}))
    # Events come in order: once the re-created "chosen" is seen, "another" would have been.
    await log.until(lambda: log.cache.get("chosen", {}).get("data") == {"v": "again"},
                    "the re-created object arrived")
    assert log.changes() == [(EventType.ADDED, "chosen"), (EventType.MODIFIED, "chosen"),
                             (EventType.DELETED, "chosen"), (EventType.ADDED, "chosen")]
    await assert_cache_matches_kubectl(log, control_plane, namespace,
                                       "--field-selector", "metadata.name=chosen")


# --- REST: errors -------------------------------------------------------------------------------


async def test_missing_objects_are_not_found(api: KubeApi, namespace: str) -> None:
    path = core_path(namespace, "configmaps", "nope")
    with pytest.raises(NotFoundError) as info:
        await api.get(path)
    assert (info.value.status, info.value.reason) == (404, "NotFound")
    assert info.value.message == 'configmaps "nope" not found'
    assert str(info.value) == '404 NotFound: configmaps "nope" not found'
    with pytest.raises(NotFoundError, match='configmaps "nope" not found'):
        await api.merge_patch(path, {"data": {"a": "b"}})
    with pytest.raises(NotFoundError, match=r'namespaces "no-such-namespace" not found'):
        await api.create(core_path("no-such-namespace", "configmaps"), configmap("x"))
    with pytest.raises(NotFoundError, match="could not find the requested resource"):
        await api.get(core_path(namespace, "nosuchresources"))
    assert await api.get_or_none(path) is None
    await api.delete(path)  # deleting what is gone is done


async def test_conflicts(api: KubeApi, namespace: str) -> None:
    path = core_path(namespace, "configmaps")
    created = await api.create(path, configmap("c", {"v": "1"}))
    with pytest.raises(ConflictError) as info:
        await api.create(path, configmap("c"))
    assert (info.value.status, info.value.reason) == (409, "AlreadyExists")
    assert info.value.message == 'configmaps "c" already exists'

    stale = created["metadata"]["resourceVersion"]
    await api.merge_patch(f"{path}/c", {"data": {"v": "2"}})
    with pytest.raises(ConflictError) as info:
        await api.merge_patch(f"{path}/c", {"metadata": {"resourceVersion": stale},
                                            "data": {"v": "3"}})
    assert (info.value.status, info.value.reason) == (409, "Conflict")
    assert "the object has been modified" in info.value.message
    with pytest.raises(ConflictError, match="the object has been modified"):
        await api.request("PUT", f"{path}/c", body=created)

    with pytest.raises(ConflictError, match="the UID in the precondition"):
        await api.delete(f"{path}/c", uid="00000000-0000-0000-0000-000000000000")
    assert (await api.get(f"{path}/c"))["data"] == {"v": "2"}
    await api.delete(f"{path}/c", uid=created["metadata"]["uid"])
    assert await api.get_or_none(f"{path}/c") is None


async def test_other_refusals_are_plain_api_errors(api: KubeApi, namespace: str) -> None:
    with pytest.raises(ApiError) as info:
        await api.create(core_path(namespace, "configmaps"), configmap("Not_A_Name"))
    assert type(info.value) is ApiError
    assert (info.value.status, info.value.reason) == (422, "Invalid")
    assert 'ConfigMap "Not_A_Name" is invalid: metadata.name' in info.value.message


def token_kubeconfig(plane: ControlPlane, token: str, path: Path) -> str:
    """A kubeconfig for the control plane that authenticates with ``token`` only."""
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"]}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    return str(path)


async def test_forbidden_and_unauthorized(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    await kubectl(control_plane, "create", "serviceaccount", "nobody", "-n", namespace)
    token = (await kubectl(control_plane, "create", "token", "nobody", "-n",
                           namespace)).strip()
    nobody = await api_client(token_kubeconfig(control_plane, token, tmp_path / "nobody"))
    stranger = await api_client(token_kubeconfig(control_plane, "not-a-token",
                                                 tmp_path / "stranger"))
    try:
        with pytest.raises(ApiError) as info:
            await nobody.list(core_path(namespace, "configmaps"))
        assert type(info.value) is ApiError
        assert (info.value.status, info.value.reason) == (403, "Forbidden")
        assert (f'User "system:serviceaccount:{namespace}:nobody" cannot list resource '
                f'"configmaps"') in info.value.message
        with pytest.raises(ApiError) as info:
            await stranger.get(core_path(namespace, "configmaps", "x"))
        assert type(info.value) is ApiError
        assert (info.value.status, info.value.reason) == (401, "Unauthorized")
    finally:
        await nobody.close()
        await stranger.close()


# --- REST: writes ---------------------------------------------------------------------------------


async def test_server_side_apply_with_field_managers(
        api: KubeApi, control_plane: ControlPlane, namespace: str) -> None:
    path = core_path(namespace, "configmaps", "applied")

    def managers(obj: Mapping[str, Any]) -> dict[str, Any]:
        return {m["manager"]: m["fieldsV1"] for m in obj["metadata"]["managedFields"]
                if m["operation"] == "Apply"}

    applied = await api.apply(path, configmap("applied", {"shared": "a", "only-a": "a"}),
                              field_manager="manager-a")
    assert applied["data"] == {"shared": "a", "only-a": "a"}
    assert managers(applied) == {"manager-a": {"f:data": {"f:shared": {}, "f:only-a": {}}}}

    # Another manager may not take a field over without force ...
    with pytest.raises(ConflictError) as info:
        await api.apply(path, configmap("applied", {"shared": "b"}), field_manager="manager-b",
                        force=False)
    assert info.value.status == 409
    assert 'conflict with "manager-a"' in info.value.message
    assert ".data.shared" in info.value.message
    # ... but may add fields nobody owns, and takes owned ones over with force (the default).
    await api.apply(path, configmap("applied", {"only-b": "b"}), field_manager="manager-b",
                    force=False)
    applied = await api.apply(path, configmap("applied", {"shared": "b", "only-b": "b"}),
                              field_manager="manager-b")
    assert applied["data"] == {"shared": "b", "only-a": "a", "only-b": "b"}
    assert managers(applied) == {"manager-a": {"f:data": {"f:only-a": {}}},
                                 "manager-b": {"f:data": {"f:shared": {}, "f:only-b": {}}}}

    # What a manager stops applying, and nobody else owns, is removed.
    applied = await api.apply(path, configmap("applied", {}), field_manager="manager-a")
    assert applied["data"] == {"shared": "b", "only-b": "b"}
    seen = (await kubectl_objects(control_plane, namespace, "configmaps"))["applied"]
    assert seen["data"] == applied["data"]
    assert seen["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]


async def test_apply_uses_the_operator_field_manager_by_default(
        api: KubeApi, namespace: str) -> None:
    applied = await api.apply(core_path(namespace, "configmaps", "default-manager"),
                              configmap("default-manager", {"k": "v"}))
    assert [m["manager"] for m in applied["metadata"]["managedFields"]] == ["plugin-operator"]


def datasource(name: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DataSourceInstance",
            "metadata": {"name": name},
            "spec": {"pluginRef": {"name": "some-plugin"}, "uid": f"{name}-uid"}}


async def test_merge_patch_of_status(api: KubeApi, crds: ControlPlane, namespace: str) -> None:
    path = group_path(API_VERSION, namespace, DATASOURCE_PLURAL, "ds")
    created = await api.create(group_path(API_VERSION, namespace, DATASOURCE_PLURAL),
                               datasource("ds"))
    generation = created["metadata"]["generation"]

    patched = await api.merge_patch(f"{path}/status", {"status": {
        "settingsVersion": 3, "health": {"status": "OK", "message": "fine"}}})
    assert patched["status"] == {"settingsVersion": 3,
                                 "health": {"status": "OK", "message": "fine"}}
    # Merge semantics: unnamed fields stay, null removes.
    patched = await api.merge_patch(f"{path}/status", {"status": {
        "health": {"message": None, "status": "ERROR"}}})
    assert patched["status"] == {"settingsVersion": 3, "health": {"status": "ERROR"}}
    # The status subresource ignores spec; the main resource ignores status.
    await api.merge_patch(f"{path}/status", {"spec": {"name": "via-status"},
                                             "status": {"settingsVersion": 4}})
    await api.merge_patch(path, {"status": {"settingsVersion": 99}})
    seen: dict[str, Any] = crds.get_json("-n", namespace, "datasourceinstance", "ds")
    assert seen["status"] == {"settingsVersion": 4, "health": {"status": "ERROR"}}
    assert "name" not in seen["spec"]
    assert seen["metadata"]["generation"] == generation

    # The CRD's own validation speaks through ApiError.
    with pytest.raises(ApiError) as info:
        await api.merge_patch(path, {"spec": {"uid": "another"}})
    assert (info.value.status, info.value.reason) == (422, "Invalid")
    assert "spec.uid is immutable" in info.value.message


async def test_list_pages_through_continue_tokens(api: KubeApi, namespace: str) -> None:
    path = core_path(namespace, "configmaps")
    total = 520  # more than one page of 500
    semaphore = asyncio.Semaphore(32)

    async def create(n: int) -> None:
        async with semaphore:
            labels = {"page": "test"} if n % 10 else {"page": "other"}
            await api.create(path, configmap(f"cm-{n:04d}", labels=labels))

    await asyncio.gather(*(create(n) for n in range(total)))
    listed = await api.list(path)
    names = [name_of(o) for o in listed]
    assert len(names) == len(set(names)) == total
    labelled = await api.list(path, label_selector="page=test")
    assert len(labelled) == total - total // 10
    assert all(o["metadata"]["labels"] == {"page": "test"} for o in labelled)
    by_field = await api.list(path, field_selector="metadata.name=cm-0007")
    assert [name_of(o) for o in by_field] == ["cm-0007"]


async def test_requests_carry_bodies_and_queries(api: KubeApi, namespace: str) -> None:
    path = core_path(namespace, "configmaps")
    binary = base64.b64encode(b"\x00\x01").decode()
    created = await api.create(path, {**configmap("q", {"text": "é"}),
                                      "binaryData": {"bin": binary}})
    assert created["data"] == {"text": "é"}
    assert created["binaryData"] == {"bin": binary}
    dry = await api.request("POST", path, body=configmap("dry"), query={"dryRun": "All"})
    assert dry["metadata"]["name"] == "dry"
    assert await api.get_or_none(f"{path}/dry") is None
    assert (await api.get(f"{path}/q", resourceVersion="0"))["data"] == {"text": "é"}
