"""Trusted OpenPGP public keys, looked up by a manifest's ``keyId``.

Grafana's own key ships as package data and is trusted by default; more keys (for
private signatures) come from configuration as files or armored text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pysequoia

GRAFANA_KEY_ID = "7e4d0c6a708866e7"
_GRAFANA_KEY_RESOURCE = "grafana-public-key.asc"


class TrustedKeyError(ValueError):
    """A configured key cannot be read or parsed."""


def key_id_of(cert: Any) -> str:
    """The 16-hex-digit key ID of a certificate's (or secret key's) primary key, lowercase."""
    if not hasattr(cert, "fingerprint"):
        cert = cert.extract_certificate()
    return str(cert.fingerprint)[-16:].lower()


def _parse_certs(data: bytes, origin: str) -> list[Any]:
    try:
        certs = list(pysequoia.Cert.split_bytes(data))
    except Exception as exc:  # pysequoia raises plain exceptions with Rust backtraces
        raise TrustedKeyError(f"{origin} is not an OpenPGP public key: {_first_line(exc)}; give "
                        "an ASCII-armored key (-----BEGIN PGP PUBLIC KEY BLOCK-----)") from None
    if not certs:
        raise TrustedKeyError(f"{origin} holds no OpenPGP key; give an ASCII-armored public key")
    return certs


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class TrustedKeys:
    """An immutable set of trusted certificates indexed by key ID."""

    def __init__(self, certs: Iterable[Any] = ()) -> None:
        by_id: dict[str, Any] = {}
        for cert in certs:
            by_id[key_id_of(cert)] = cert
        self._by_id: Mapping[str, Any] = MappingProxyType(by_id)

    @classmethod
    def with_grafana_key(cls) -> TrustedKeys:
        return cls([grafana_cert()])

    def adding(self, certs: Iterable[Any]) -> TrustedKeys:
        return TrustedKeys([*self._by_id.values(), *certs])

    def adding_armored(self, armored: str | bytes, origin: str = "key text") -> TrustedKeys:
        data = armored.encode() if isinstance(armored, str) else armored
        return self.adding(_parse_certs(data, origin))

    def adding_file(self, path: Path) -> TrustedKeys:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustedKeyError(f"cannot read trusted key file {path}: {exc.strerror}") from None
        return self.adding(_parse_certs(data, f"trusted key file {path}"))

    def lookup(self, key_id: str) -> Any | None:
        """The certificate for a manifest keyId (16 hex digits, or a full fingerprint)."""
        wanted = key_id.strip().lower()
        if len(wanted) == 40:
            wanted = wanted[-16:]
        return self._by_id.get(wanted)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_id))


def grafana_cert() -> Any:
    """Grafana's built-in plugin signing key (key ID 7e4d0c6a708866e7)."""
    data = resources.files("plugin_operator.signatures").joinpath(_GRAFANA_KEY_RESOURCE)
    return _parse_certs(data.read_bytes(), "Grafana's built-in key")[0]
