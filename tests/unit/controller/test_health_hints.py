"""Health check failures that are about the network get a reason and a next step."""

from __future__ import annotations

import pytest

from plugin_operator.controller.health_hints import network_hint


@pytest.mark.parametrize(("message", "reason"), [
    # Go's net package (the Go SDK's datasources)
    ('Get "https://db.example:443": dial tcp: lookup db.example on 10.96.0.10:53: no such '
     "host", "NameResolutionFailed"),
    ("dial tcp: lookup db on 10.96.0.10:53: server misbehaving", "NameResolutionFailed"),
    ("dial tcp 10.0.0.7:5432: connect: connection refused", "ConnectionRefused"),
    ("dial tcp 10.0.0.7:5432: i/o timeout", "ConnectionTimedOut"),
    # Python, libpq
    ("Cannot connect to host db:443 ssl:default [Temporary failure in name resolution]",
     "NameResolutionFailed"),
    ('could not translate host name "db" to address', "NameResolutionFailed"),
    ("[Errno 111] ECONNREFUSED", "ConnectionRefused"),
    ("Connection timed out while trying to connect to db:5432", "ConnectionTimedOut"),
])
def test_network_failures_get_a_reason_and_advice(message: str, reason: str) -> None:
    hint = network_hint(message)
    assert hint is not None
    assert hint.reason == reason
    explained = hint.explain(message)
    assert explained.startswith(message)
    assert "check" in explained or "open" in explained


@pytest.mark.parametrize("message", [
    "secure setting apiKey is missing", "401 Unauthorized: invalid API key",
    "query timeout after 30s",  # a timeout, but not of a connection
])
def test_other_failures_get_none(message: str) -> None:
    assert network_hint(message) is None
