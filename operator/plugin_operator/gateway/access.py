"""Who is calling and what they may do: bearer tokens, RBAC attributes, decision caching.

The reviews themselves (TokenReview, SubjectAccessReview) are I/O and come in as
callables, so this module stays pure and testable.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from plugin_operator.kube.reviews import Identity
from plugin_operator.models.resources import DATASOURCE_PLURAL, GROUP, PLUGIN_PLURAL

from .errors import forbidden, unauthorized

K = TypeVar("K")
V = TypeVar("V")

QUERY_VERB = "query"


ANONYMOUS = Identity("")


@dataclass(frozen=True)
class Permission:
    """One RBAC check: ``verb`` on ``resource`` (named ``name``) in ``namespace``."""

    verb: str
    resource: str
    namespace: str
    name: str = ""
    subresource: str = ""
    group: str = GROUP


@functools.lru_cache(maxsize=4096)
def query_datasource(namespace: str, name: str) -> Permission:
    """Asked on every query: the same (immutable) object for the same datasource."""
    return Permission(QUERY_VERB, DATASOURCE_PLURAL, namespace, name)


def query_plugin(namespace: str, name: str) -> Permission:
    """App plugin calls (resources, health, streams) and plugin-scoped streams."""
    return Permission(QUERY_VERB, PLUGIN_PLURAL, namespace, name)


def read_plugin(namespace: str, name: str) -> Permission:
    """Plugin facts, frontend files and metrics: what ``kubectl get plugin`` already shows."""
    return Permission("get", PLUGIN_PLURAL, namespace, name)


class TtlCache(Generic[K, V]):
    """A small bounded cache whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, ttl: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


# Where a caller whose datasource forwards its OAuth identity (jsonData.oauthPassThru) puts
# its Kubernetes token, so that ``Authorization`` can carry the OAuth token for the plugin.
GATEWAY_AUTHORIZATION = "X-Plugin-Operator-Authorization"


def credential_header(headers: Mapping[str, str]) -> str:
    """The header that carries the caller's Kubernetes token: ``X-Plugin-Operator-
    Authorization`` when sent, else ``Authorization``."""
    return GATEWAY_AUTHORIZATION if GATEWAY_AUTHORIZATION in headers else "Authorization"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header (or of ``X-Plugin-Operator-
    Authorization`` when the caller sends one); None when there is no such header."""
    header = credential_header(headers)
    value = headers.get(header)
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized(f"the {header} header must be 'Bearer <Kubernetes token>'")
    if not (token.isascii() and token.isprintable()) or " " in token:
        # Kubernetes tokens are printable ASCII; anything else is not worth a TokenReview.
        raise unauthorized("the bearer token is malformed: Kubernetes tokens are printable "
                           "ASCII without spaces")
    return token


TokenReviewer = Callable[[str], Awaitable[Identity | None]]
AccessReviewer = Callable[[Identity, Permission], Awaitable[bool]]


@dataclass
class Gatekeeper:
    """Authenticates callers and authorizes their calls, caching both decisions briefly.

    With ``anonymous`` set, requests without a token are served as nobody; requests with a
    token are still checked, so a bad token never passes silently.

    Rejected tokens are remembered too (for ``negative_ttl_seconds``, never longer than
    accepted ones, in a smaller table), and concurrent requests with the same unchecked
    token share one TokenReview: a flood with one garbage token costs the apiserver one
    review per few seconds, not one per request."""

    review_token: TokenReviewer | None
    review_access: AccessReviewer | None
    anonymous: bool = False
    ttl_seconds: float = 10.0
    negative_ttl_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _identities: TtlCache[str, Identity] = field(init=False)
    _rejected: TtlCache[str, bool] = field(init=False)
    _reviews: dict[str, asyncio.Task[Identity | None]] = field(init=False)
    _decisions: TtlCache[tuple[Identity, Permission], bool] = field(init=False)

    def __post_init__(self) -> None:
        self._identities = TtlCache(self.ttl_seconds, clock=self.clock)
        self._rejected = TtlCache(min(self.negative_ttl_seconds, self.ttl_seconds),
                                  max_entries=1000, clock=self.clock)
        self._reviews = {}
        self._decisions = TtlCache(self.ttl_seconds, clock=self.clock)
        if not self.anonymous and (self.review_token is None or self.review_access is None):
            raise ValueError("without anonymous access the gateway needs TokenReview and "
                             "SubjectAccessReview (a Kubernetes API connection)")

    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        token = bearer_token(headers)
        if token is None:
            if self.anonymous:
                return ANONYMOUS
            raise unauthorized("no bearer token; send 'Authorization: Bearer <token>' with a "
                               "Kubernetes ServiceAccount or user token")
        if self.review_token is None:
            raise unauthorized("tokens cannot be checked: the gateway runs without a "
                               "Kubernetes API connection")
        digest = hashlib.sha256(token.encode()).hexdigest()
        identity = self._identities.get(digest)
        if identity is not None:
            return identity
        if self._rejected.get(digest) is None:
            identity = await self._review_once(digest, token)
            if identity is not None:
                return identity
        raise unauthorized("the token was rejected by the Kubernetes API (TokenReview)")

    async def _review_once(self, digest: str, token: str) -> Identity | None:
        """One TokenReview per token at a time; its answer is cached when it comes."""
        review = self._reviews.get(digest)
        if review is None:
            assert self.review_token is not None
            review = self._reviews[digest] = asyncio.ensure_future(self.review_token(token))
            review.add_done_callback(lambda done: self._reviewed(digest, done))
        # Shielded: a caller that hangs up must not cancel the others' shared review.
        return await asyncio.shield(review)

    def _reviewed(self, digest: str, review: asyncio.Task[Identity | None]) -> None:
        del self._reviews[digest]
        if review.cancelled() or review.exception() is not None:
            return  # the apiserver failed; nothing learned about the token
        identity = review.result()
        if identity is None:
            self._rejected.put(digest, True)
        else:
            self._identities.put(digest, identity)

    async def allowed(self, identity: Identity, permission: Permission) -> bool:
        if identity.anonymous:
            return self.anonymous
        if self.review_access is None:
            return False
        decision = self._decisions.get((identity, permission))
        if decision is None:
            decision = await self.review_access(identity, permission)
            self._decisions.put((identity, permission), decision)
        return decision

    async def authorize(self, identity: Identity, permission: Permission) -> None:
        if not await self.allowed(identity, permission):
            raise forbidden(permission.verb, permission.resource, permission.name,
                            permission.namespace)

