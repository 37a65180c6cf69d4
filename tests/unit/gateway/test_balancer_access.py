"""Least-in-flight selection, admission limits, authentication and cached decisions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plugin_operator.gateway.access import (
    ANONYMOUS,
    Gatekeeper,
    Identity,
    Permission,
    TtlCache,
    bearer_token,
    query_datasource,
)
from plugin_operator.gateway.balancer import LoadTracker
from plugin_operator.gateway.errors import GatewayError


def test_pick_prefers_the_endpoint_with_fewest_in_flight_and_excludes_tried() -> None:
    tracker = LoadTracker(10)
    with tracker.calling("a"), tracker.calling("a"), tracker.calling("b"):
        assert tracker.pick(["a", "b", "c"]) == "c"
        assert tracker.pick(["a", "b"]) == "b"
        assert tracker.pick(["a", "b"], exclude=["b"]) == "a"
    assert tracker.pick([], ()) is None
    assert tracker.pick(["a"], ["a"]) is None
    assert {tracker.pick(["a", "b"]) for _ in range(4)} == {"a", "b"}


def test_admission_stops_at_the_limit_and_releases() -> None:
    tracker = LoadTracker(2)
    assert tracker.try_admit("p")
    assert tracker.try_admit("p")
    assert not tracker.try_admit("p")
    assert tracker.try_admit("q")
    tracker.release("p")
    assert tracker.try_admit("p")
    with pytest.raises(ValueError, match="at least 1"):
        LoadTracker(0)


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(5, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    assert cache.get("a") == 1
    now[0] = 5.0
    assert cache.get("a") is None
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None
    assert cache.get("c") == 3


def test_bearer_token_parsing() -> None:
    assert bearer_token({}) is None
    assert bearer_token({"Authorization": "Bearer abc"}) == "abc"
    with pytest.raises(GatewayError) as error:
        bearer_token({"Authorization": "Basic abc"})
    assert error.value.status == 401


class Reviews:
    def __init__(self) -> None:
        self.tokens = 0
        self.access = 0

    async def token(self, token: str) -> Identity | None:
        self.tokens += 1
        return Identity("alice", groups=("devs",)) if token == "good" else None

    async def decide(self, identity: Identity, permission: Permission) -> bool:
        self.access += 1
        return permission.name == "allowed"


async def test_gatekeeper_authenticates_authorizes_and_caches() -> None:
    reviews = Reviews()
    keeper = Gatekeeper(reviews.token, reviews.decide)
    with pytest.raises(GatewayError) as none:
        await keeper.authenticate({})
    assert none.value.status == 401
    with pytest.raises(GatewayError) as bad:
        await keeper.authenticate({"Authorization": "Bearer bad"})
    assert bad.value.status == 401
    alice = await keeper.authenticate({"Authorization": "Bearer good"})
    await keeper.authenticate({"Authorization": "Bearer good"})
    assert alice.username == "alice"
    assert reviews.tokens == 2
    await keeper.authorize(alice, query_datasource("ns", "allowed"))
    await keeper.authorize(alice, query_datasource("ns", "allowed"))
    assert reviews.access == 1
    with pytest.raises(GatewayError) as denied:
        await keeper.authorize(alice, query_datasource("ns", "other"))
    assert denied.value.status == 403
    assert "query on datasourceinstances" in denied.value.message


async def test_anonymous_only_when_configured() -> None:
    reviews = Reviews()
    open_keeper = Gatekeeper(reviews.token, reviews.decide, anonymous=True)
    assert await open_keeper.authenticate({}) == ANONYMOUS
    await open_keeper.authorize(ANONYMOUS, query_datasource("ns", "x"))
    with pytest.raises(ValueError, match="TokenReview"):
        Gatekeeper(None, None)


async def test_a_rejected_token_is_reviewed_once_while_cached() -> None:
    reviews = Reviews()
    now = [0.0]
    keeper = Gatekeeper(reviews.token, reviews.decide, ttl_seconds=10,
                        negative_ttl_seconds=5, clock=lambda: now[0])
    for _ in range(300):
        with pytest.raises(GatewayError) as rejected:
            await keeper.authenticate({"Authorization": "Bearer garbage"})
        assert rejected.value.status == 401
    assert reviews.tokens == 1
    now[0] = 5.0  # the rejection is remembered briefly, then asked again
    with pytest.raises(GatewayError):
        await keeper.authenticate({"Authorization": "Bearer garbage"})
    assert reviews.tokens == 2


async def test_concurrent_requests_with_one_token_share_one_review() -> None:
    reviews = Reviews()
    keeper = Gatekeeper(reviews.token, reviews.decide)
    outcomes = await asyncio.gather(
        *(keeper.authenticate({"Authorization": "Bearer garbage"}) for _ in range(50)),
        *(keeper.authenticate({"Authorization": "Bearer good"}) for _ in range(50)),
        return_exceptions=True)
    assert reviews.tokens == 2
    assert all(isinstance(o, GatewayError) for o in outcomes[:50])
    assert all(isinstance(o, Identity) for o in outcomes[50:])


async def test_rejections_are_never_cached_longer_than_acceptances() -> None:
    reviews = Reviews()
    now = [0.0]
    keeper = Gatekeeper(reviews.token, reviews.decide, ttl_seconds=1,
                        negative_ttl_seconds=30, clock=lambda: now[0])
    with pytest.raises(GatewayError):
        await keeper.authenticate({"Authorization": "Bearer garbage"})
    now[0] = 1.0
    with pytest.raises(GatewayError):
        await keeper.authenticate({"Authorization": "Bearer garbage"})
    assert reviews.tokens == 2


async def test_a_failed_review_is_not_cached() -> None:
    calls = 0

    async def broken(token: str) -> Identity | None:
        nonlocal calls
        calls += 1
        raise OSError("apiserver unreachable")

    keeper = Gatekeeper(broken, Reviews().decide)
    for _ in range(2):
        with pytest.raises(OSError, match="unreachable"):
            await keeper.authenticate({"Authorization": "Bearer x"})
    assert calls == 2


def test_malformed_tokens_are_refused_without_a_review() -> None:
    for header in ("Bearer t\u00f6ken", "Bearer a\tb", "Bearer \udcff"):
        with pytest.raises(GatewayError) as error:
            bearer_token({"Authorization": header})
        assert "malformed" in error.value.message


def test_the_in_flight_gauge_reads_the_admission_count_when_scraped(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from plugin_operator.gateway.routing import RoutingTable
    from plugin_operator.gateway.server import Gateway, GatewayConfig

    gateway = Gateway(RoutingTable(), Gatekeeper(None, None, anonymous=True),
                      GatewayConfig(max_in_flight_per_plugin=2, asset_cache_dir=tmp_path))

    def scraped() -> bytes:
        return generate_latest(gateway.metrics.registry)

    with gateway.admitted("p"):
        assert b'plugin_gateway_in_flight_requests{plugin="p"} 1.0' in scraped()
        with gateway.admitted("p"):
            assert b'plugin_gateway_in_flight_requests{plugin="p"} 2.0' in scraped()
            with pytest.raises(GatewayError) as refused:
                gateway.admitted("p")
        assert refused.value.status == 503
    assert b'plugin_gateway_in_flight_requests{plugin="p"} 0.0' in scraped()
    assert query_datasource("ns", "a") is query_datasource("ns", "a")
