"""What a failed health check says about the network, and what to do about it.

A datasource whose backend cannot resolve or reach its server fails its health check with
whatever words its client library uses. In our pods the usual cause is the backends'
NetworkPolicy: egress is closed except DNS and the artifact cache until the operator's
user opens it. These hints turn the common messages (Go's net package, Python's socket and
aiohttp, libpq, grpc) into a condition reason and a next step.
"""

from __future__ import annotations

from dataclasses import dataclass

_NAME_RESOLUTION = ("name resolution", "no such host", "name or service not known",
                    "nodename nor servname", "server misbehaving", "getaddrinfo",
                    "could not translate host name", "dns resolution failed")
_REFUSED = ("connection refused", "connect: connection refused", "econnrefused")
_UNREACHABLE = ("i/o timeout", "connect timeout", "connection timed out",
                "timeout while connecting", "no route to host", "network is unreachable")

EGRESS_DOC = "README.md, 'Let a plugin reach its datasource' (examples/datasource-egress.yaml)"


@dataclass(frozen=True)
class NetworkHint:
    reason: str  # the Healthy condition's reason and the event's
    advice: str

    def explain(self, message: str) -> str:
        return f"{message} ({self.advice})"


def network_hint(message: str) -> NetworkHint | None:
    """The hint for a health check's failure message, or None when it is not about the
    network."""
    text = message.lower()
    if any(fragment in text for fragment in _NAME_RESOLUTION):
        return NetworkHint(
            "NameResolutionFailed",
            "the backend could not resolve its server's name: check the datasource's URL, "
            "and that backend pods may reach the cluster's DNS (the chart's "
            "networkPolicy.dns.ports must list the port the DNS pods listen on)")
    if any(fragment in text for fragment in _REFUSED):
        return NetworkHint(
            "ConnectionRefused",
            "nothing accepted the connection: check the datasource's URL and port, and that "
            f"the server runs; to open egress from the plugin's pods see {EGRESS_DOC}")
    if any(fragment in text for fragment in _UNREACHABLE) and (
            "dial" in text or "connect" in text):
        return NetworkHint(
            "ConnectionTimedOut",
            "the connection got no answer, which is what a NetworkPolicy dropping the "
            f"backend's egress looks like: open it for this plugin ({EGRESS_DOC})")
    return None
