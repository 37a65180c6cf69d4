"""The operator's artifact cache: bounded, evicts what no Plugin uses, serves only verified
archives, and refills itself from the mirrors after a restart."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from plugin_operator.controller.artifacts import (
    UNUSED_GRACE_SECONDS,
    ArtifactCollector,
    ArtifactStore,
    artifact_routes,
    digests_in_use,
)
from plugin_operator.controller.config import OperatorConfig
from plugin_operator.controller.packages import PackageError, PackagePipeline, UrlInput
from plugin_operator.controller.podspec import Artifact
from plugin_operator.models.resources import parse_plugin_spec

NOW = 1_000_000.0


def _store(tmp_path: Path, max_bytes: int = 0) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_bytes, clock=lambda: NOW)


def _put(store: ArtifactStore, data: bytes, age: float) -> str:
    digest, _ = store.put_bytes(data)
    os.utime(store.path(digest), (NOW - age, NOW - age))
    return digest


def test_unused_archives_go_after_the_grace_period_used_ones_stay(tmp_path: Path) -> None:
    store = _store(tmp_path)
    used_old = _put(store, b"used", UNUSED_GRACE_SECONDS * 10)
    unused_old = _put(store, b"unused", UNUSED_GRACE_SECONDS + 1)
    unused_new = _put(store, b"fresh", 5)
    assert store.collect({used_old}) == [unused_old]
    assert store.has(used_old)
    assert store.has(unused_new)
    assert not store.has(unused_old)


def test_over_the_bound_the_oldest_unused_go_first_never_used_ones(tmp_path: Path) -> None:
    store = _store(tmp_path, max_bytes=250)
    used = _put(store, b"u" * 100, 1000)
    oldest = _put(store, b"a" * 100, 30)
    newer = _put(store, b"b" * 100, 20)
    newest = _put(store, b"c" * 100, 10)
    assert store.collect({used}) == [oldest, newer]
    assert store.has(used)
    assert store.has(newest)
    # Archives in use are kept even when they alone exceed the bound.
    small = _store(tmp_path / "small", max_bytes=50)
    big = _put(small, b"x" * 100, 1000)
    assert small.collect({big}) == []
    assert small.has(big)


def test_collection_removes_leftovers_of_a_crash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old = store.scratch()
    os.utime(old, (NOW - UNUSED_GRACE_SECONDS - 1,) * 2)
    recent = store.scratch()
    os.utime(recent, (NOW - 1,) * 2)
    store.collect(set())
    assert not old.exists()
    assert recent.exists()


def test_digests_in_use_skip_rejected_plugins_and_include_pins() -> None:
    a, b, c = ("a" * 64), ("b" * 64), ("c" * 64)
    plugins: list[dict[str, Any]] = [
        {"spec": {"source": {"url": "x"}}, "status": {"phase": "Running",
                                                     "artifact": {"sha256": a}}},
        {"spec": {"source": {"url": "x", "sha256": f"sha256:{b.upper()}"}}, "status": {}},
        {"spec": {"source": {"url": "x"}}, "status": {"phase": "Rejected",
                                                     "artifact": {"sha256": c}}},
        {"spec": {}},
    ]
    assert digests_in_use(plugins) == {a, b}


async def test_the_collector_asks_what_is_in_use_and_reports_evictions(tmp_path: Path) -> None:
    store = _store(tmp_path)
    keep = _put(store, b"keep", UNUSED_GRACE_SECONDS * 2)
    drop = _put(store, b"drop", UNUSED_GRACE_SECONDS * 2)
    evicted: list[list[str]] = []

    async def in_use() -> set[str]:
        return {keep}

    collector = ArtifactCollector(store, in_use, on_evicted=evicted.append)
    assert await collector.collect_once() == [drop]
    assert evicted == [[drop]]


async def _get(store: ArtifactStore, digest: str) -> int:
    app = web.Application()
    app.add_routes(artifact_routes(store))
    async with TestClient(TestServer(app)) as client:
        response = await client.get(f"/artifacts/{digest}")
        return response.status


async def test_only_verified_archives_are_served(tmp_path: Path) -> None:
    store = _store(tmp_path)
    digest, _ = store.put_bytes(b"an archive")
    assert await _get(store, digest) == 404  # stored, not verified (or rejected)
    store.mark_verified(digest)
    assert await _get(store, digest) == 200
    store.remove(digest)
    assert await _get(store, digest) == 404
    store.put_bytes(b"an archive")  # back, e.g. from a mirror: not served until re-verified
    assert await _get(store, digest) == 404


SPEC = parse_plugin_spec({"pluginId": "acme-test-datasource", "version": "1.0.0",
                          "source": {"url": "https://example.com/p.zip"}})


async def test_the_pipeline_marks_verified_archives_never_rejected_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    pipeline = PackagePipeline(store, OperatorConfig())
    good, _ = store.put_bytes(b"good")
    bad, _ = store.put_bytes(b"bad")

    def fake_verify(artifact: Artifact, spec: object, allow_unsigned: bool) -> object:
        if artifact.sha256 == bad:
            raise PackageError("signatureInvalid", "no", artifact=artifact)
        return object()

    monkeypatch.setattr(pipeline, "_verify", fake_verify)
    await pipeline.verify(Artifact(good, 4), SPEC)
    with pytest.raises(PackageError):
        await pipeline.verify(Artifact(bad, 3), SPEC)
    assert store.servable(good)
    assert not store.servable(bad)
    pipeline.forget([good])
    assert not pipeline._verdicts or all(k[0] != good for k in pipeline._verdicts)


def _mirror(tmp_path: Path, data: bytes) -> tuple[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    root = tmp_path / "mirror"
    (root / "artifacts").mkdir(parents=True)
    (root / "artifacts" / digest).write_bytes(data)
    return root.as_uri(), digest


async def test_a_restarted_operator_refills_from_a_mirror_before_the_source(
        tmp_path: Path) -> None:
    mirror, digest = _mirror(tmp_path, b"the archive")
    empty = (tmp_path / "empty").as_uri()
    config = OperatorConfig(artifacts_mirrors=(empty, mirror))
    pipeline = PackagePipeline(_store(tmp_path), config)
    # The plugin's source is unreachable; the pinned archive comes from the second mirror.
    source = UrlInput("http://127.0.0.1:9/unreachable.zip", digest)
    assert await pipeline.fetch(source) == Artifact(digest, len(b"the archive"))
    # An unpinned URL reuses the digest it gave before (status.artifact.sha256) likewise.
    other = PackagePipeline(_store(tmp_path / "other"), config)
    unpinned = UrlInput("http://127.0.0.1:9/unreachable.zip", None)
    assert (await other.fetch(unpinned, known=digest)).sha256 == digest


async def test_a_mirror_with_wrong_bytes_is_not_trusted(tmp_path: Path) -> None:
    mirror, digest = _mirror(tmp_path, b"the archive")
    (tmp_path / "mirror" / "artifacts" / digest).write_bytes(b"tampered")
    pipeline = PackagePipeline(_store(tmp_path), OperatorConfig(artifacts_mirrors=(mirror,)))
    assert await pipeline.refill(digest) is False
    assert not pipeline.store.has(digest)


def test_the_cache_reports_its_bytes_in_use_and_its_bound(tmp_path: Path) -> None:
    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(f"plugin_operator_artifact_cache_{name}")

    store = _store(tmp_path, max_bytes=250)
    assert sample("max_bytes") == 250
    used = _put(store, b"u" * 100, 1000)
    _put(store, b"a" * 60, 30)
    gone = _put(store, b"b" * 40, UNUSED_GRACE_SECONDS + 1)
    assert store.collect({used}) == [gone]
    assert sample("bytes") == 160
    assert sample("in_use_bytes") == 100
    # Archives in use beyond the bound stay, and the gauge says so.
    over = _put(store, b"o" * 200, 5)
    store.collect({used, over})
    assert sample("in_use_bytes") == 300
    assert sample("bytes") == 300
