"""Where the Kubernetes client connects and who it is (plugin_operator.kube.client).

Each kubeconfig feature is checked where it matters, by a request: ``api_client`` talks to a
small HTTPS server on loopback that trusts only a test CA and answers with the client
certificate and the Authorization header it saw. So a CA that is not loaded, a client
certificate that is not presented, or a token that is not sent fails the test, not just a
field in a returned tuple.

No test reads the machine's real ServiceAccount, $KUBECONFIG or ~/.kube/config: an autouse
fixture points all three at empty places.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugin_operator.kube import client
from plugin_operator.kube.client import ClusterUnreachableError, TokenFile, connection_settings

# --- a test PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    cert: bytes  # PEM
    key: bytes  # PEM


@dataclass(frozen=True)
class Pki:
    ca: Pair
    other_ca: Pair
    server_ip: Pair  # for 127.0.0.1
    server_named: Pair  # for apiserver.test only
    alice: Pair  # a client certificate, CN=alice
    bob: Pair  # another client certificate, CN=bob


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca(cn: str) -> tuple[Pair, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)), key


def _leaf(ca: Pair, ca_key: ec.EllipticCurvePrivateKey, cn: str, *,
          names: list[x509.GeneralName] | None = None, client_auth: bool = False) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca.cert)
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client_auth \
        else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca, ca_key = _ca("kube-test-ca")
    other_ca, _ = _ca("some-other-ca")
    return Pki(
        ca=ca, other_ca=other_ca,
        server_ip=_leaf(ca, ca_key, "apiserver",
                        names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        server_named=_leaf(ca, ca_key, "apiserver", names=[x509.DNSName("apiserver.test")]),
        alice=_leaf(ca, ca_key, "alice", client_auth=True),
        bob=_leaf(ca, ca_key, "bob", client_auth=True),
    )


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --- an HTTPS server that says who called ---------------------------------------------------


@asynccontextmanager
async def whoami_server(pki: Pki, serving: Pair, tmp_path: Path) -> AsyncIterator[str]:
    """https://127.0.0.1:<port>; GET /whoami answers {"cn": <client cert CN or null>,
    "authorization": <header or null>}. Client certificates must chain to ``pki.ca``."""
    files = tmp_path / f"server-{os.urandom(4).hex()}"
    files.mkdir()
    (files / "tls.crt").write_bytes(serving.cert)
    (files / "tls.key").write_bytes(serving.key)
    (files / "ca.crt").write_bytes(pki.ca.cert)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files / "ca.crt"))
    tls.load_cert_chain(files / "tls.crt", files / "tls.key")
    tls.verify_mode = ssl.CERT_OPTIONAL

    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        cn = None
        for rdn in (peer or {}).get("subject", ()):
            for attribute, value in rdn:
                if attribute == "commonName":
                    cn = value
        return web.json_response({"cn": cn,
                                  "authorization": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=tls).start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def whoami(kubeconfig: str | None) -> dict[str, Any]:
    api = await client.api_client(kubeconfig)
    try:
        return await api.get("/whoami")
    finally:
        await api.close()


# --- kubeconfig files ---------------------------------------------------------------------


def kubeconfig(path: Path, *, server: str, cluster: dict[str, Any] | None = None,
               user: dict[str, Any] | None = None, extra_contexts: int = 0) -> Path:
    """A kubeconfig with context "main" (current) for cluster "main" and user "main", and
    decoy contexts, clusters and users around it that must not be picked."""
    decoys = [f"decoy{n}" for n in range(extra_contexts)]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": "https://decoy.invalid:1"}}
                     for n in decoys] + [
            {"name": "main", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": n, "user": {"token": f"token-of-{n}"}} for n in decoys] + [
            {"name": "main", "user": user or {}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in decoys] + [
            {"name": "main", "context": {"cluster": "main", "user": "main"}}],
        "current-context": "main",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def no_real_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing from the machine leaks in: no ServiceAccount, no $KUBECONFIG, an empty HOME.
    Returns the (empty) ServiceAccount directory."""
    service_account = tmp_path / "serviceaccount"
    service_account.mkdir()
    monkeypatch.setattr(client, "SERVICE_ACCOUNT_DIR", service_account)
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return service_account


@pytest.fixture
def service_account(no_real_cluster: Path, pki: Pki) -> Path:
    """The files the kubelet mounts into a pod, with our test CA."""
    (no_real_cluster / "token").write_text("service-account-token\n")
    (no_real_cluster / "ca.crt").write_bytes(pki.ca.cert)
    (no_real_cluster / "namespace").write_text("default")
    return no_real_cluster


class FakeTime:
    """Stands in for the ``time`` module inside plugin_operator.kube.client."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(client, "time", clock)
    return clock


# --- credentials and trust, over a real TLS connection ----------------------------------------


async def test_token_and_inline_ca(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.ca.cert)},
                          user={"token": "s3cr3t"})
        assert await whoami(str(path)) == {"cn": None, "authorization": "Bearer s3cr3t"}


async def test_client_certificate_from_inline_data(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.ca.cert)},
                          user={"client-certificate-data": b64(pki.alice.cert),
                                "client-key-data": b64(pki.alice.key)})
        assert await whoami(str(path)) == {"cn": "alice", "authorization": None}


async def test_files_are_found_relative_to_the_kubeconfig(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "config"
    (config_dir / "pki").mkdir(parents=True)
    (config_dir / "pki" / "ca.crt").write_bytes(pki.ca.cert)
    (config_dir / "pki" / "bob.crt").write_bytes(pki.bob.cert)
    (config_dir / "pki" / "bob.key").write_bytes(pki.bob.key)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(config_dir / "kubeconfig", server=url,
                          cluster={"certificate-authority": "pki/ca.crt"},
                          user={"client-certificate": "pki/bob.crt",
                                "client-key": "pki/bob.key"})
        assert await whoami(str(path)) == {"cn": "bob", "authorization": None}


async def test_absolute_file_paths(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert)
    (tmp_path / "alice.pem").write_bytes(pki.alice.cert)
    (tmp_path / "alice-key.pem").write_bytes(pki.alice.key)
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "nested" / "kubeconfig", server=url,
                          cluster={"certificate-authority": str(tmp_path / "ca.pem")},
                          user={"client-certificate": str(tmp_path / "alice.pem"),
                                "client-key": str(tmp_path / "alice-key.pem")})
        assert (await whoami(str(path)))["cn"] == "alice"


async def test_inline_data_wins_over_a_file(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "bob.crt").write_bytes(pki.bob.cert)
    (tmp_path / "bob.key").write_bytes(pki.bob.key)
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.ca.cert),
                                   "certificate-authority": "missing-ca.crt"},
                          user={"client-certificate-data": b64(pki.alice.cert),
                                "client-key-data": b64(pki.alice.key),
                                "client-certificate": "bob.crt", "client-key": "bob.key"})
        assert (await whoami(str(path)))["cn"] == "alice"


async def test_a_token_and_a_client_certificate_are_both_sent(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.ca.cert)},
                          user={"token": "t", "client-certificate-data": b64(pki.alice.cert),
                                "client-key-data": b64(pki.alice.key)})
        assert await whoami(str(path)) == {"cn": "alice", "authorization": "Bearer t"}


async def test_a_server_signed_by_another_ca_is_refused(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.other_ca.cert)},
                          user={"token": "t"})
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await whoami(str(path))


async def test_without_a_ca_the_test_server_is_not_trusted(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url, user={"token": "t"})
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await whoami(str(path))


async def test_insecure_skip_tls_verify_trusts_any_server(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_named, tmp_path) as url:
        # Neither the CA is known nor does the certificate name 127.0.0.1.
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"insecure-skip-tls-verify": True}, user={"token": "t"})
        assert await whoami(str(path)) == {"cn": None, "authorization": "Bearer t"}
    _, tls, _, _ = connection_settings(str(path))
    assert tls.verify_mode == ssl.CERT_NONE
    assert tls.check_hostname is False


def test_verification_is_on_by_default(pki: Pki, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", server="https://127.0.0.1:6443",
                      cluster={"certificate-authority-data": b64(pki.ca.cert),
                               "insecure-skip-tls-verify": False})
    _, tls, _, extra = connection_settings(str(path))
    assert tls.verify_mode == ssl.CERT_REQUIRED
    assert tls.check_hostname is True
    assert extra == {}
    trusted: list[dict[str, Any]] = tls.get_ca_certs()
    assert any(dict(rdn[0] for rdn in ca["subject"]).get("commonName") == "kube-test-ca"
               for ca in trusted)


async def test_tls_server_name_is_the_name_checked(pki: Pki, tmp_path: Path) -> None:
    async with whoami_server(pki, pki.server_named, tmp_path) as url:
        ca = {"certificate-authority-data": b64(pki.ca.cert)}
        plain = kubeconfig(tmp_path / "plain" / "kubeconfig", server=url, cluster=ca,
                           user={"token": "t"})
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await whoami(str(plain))
        named = kubeconfig(tmp_path / "named" / "kubeconfig", server=url,
                           cluster={**ca, "tls-server-name": "apiserver.test"},
                           user={"token": "t"})
        assert connection_settings(str(named))[3] == {"server_hostname": "apiserver.test"}
        assert await whoami(str(named)) == {"cn": None, "authorization": "Bearer t"}


# --- tokens -----------------------------------------------------------------------------------


async def test_token_file_relative_to_the_kubeconfig_is_reread(
        pki: Pki, tmp_path: Path, fake_time: FakeTime) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text("first\n")
    path = kubeconfig(tmp_path / "conf" / "kubeconfig", server="https://127.0.0.1:1",
                      cluster={"certificate-authority-data": b64(pki.ca.cert)},
                      user={"tokenFile": "token"})
    _, _, token, _ = connection_settings(str(path))
    assert isinstance(token, TokenFile)
    assert token.path == tmp_path / "conf" / "token"
    assert token() == "first"
    (tmp_path / "conf" / "token").write_text("second\n")
    fake_time.now += client.TOKEN_REREAD_SECONDS - 1
    assert token() == "first"  # kept between re-reads
    fake_time.now += 2
    assert token() == "second"


async def test_a_rotated_token_file_reaches_requests(
        pki: Pki, tmp_path: Path, fake_time: FakeTime) -> None:
    (tmp_path / "token").write_text("before-rotation")
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        path = kubeconfig(tmp_path / "kubeconfig", server=url,
                          cluster={"certificate-authority-data": b64(pki.ca.cert)},
                          user={"tokenFile": "token"})
        api = await client.api_client(str(path))
        try:
            assert (await api.get("/whoami"))["authorization"] == "Bearer before-rotation"
            (tmp_path / "token").write_text("after-rotation")
            fake_time.now += client.TOKEN_REREAD_SECONDS + 1
            assert (await api.get("/whoami"))["authorization"] == "Bearer after-rotation"
        finally:
            await api.close()


def test_an_empty_token_file_is_read_again_at_once(tmp_path: Path, fake_time: FakeTime) -> None:
    (tmp_path / "token").write_text("")
    token = TokenFile(tmp_path / "token")
    assert token() == ""
    (tmp_path / "token").write_text("arrived")
    assert token() == "arrived"


def test_a_user_without_credentials_sends_none(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", server="https://127.0.0.1:6443")
    assert connection_settings(str(path))[2] is None


# --- which context --------------------------------------------------------------------------


def test_the_current_context_picks_cluster_and_user(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", server="https://main.example:6443/",
                      user={"token": "main-token"}, extra_contexts=3)
    server, _, token, _ = connection_settings(str(path))
    assert server == "https://main.example:6443"  # the trailing slash is dropped
    assert token == "main-token"


def test_a_context_names_its_own_cluster_and_user(tmp_path: Path) -> None:
    config = {
        "clusters": [{"name": "c1", "cluster": {"server": "https://one:1"}},
                     {"name": "c2", "cluster": {"server": "https://two:2"}}],
        "users": [{"name": "u1", "user": {"token": "one"}},
                  {"name": "u2", "user": {"token": "two"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c1", "user": "u2"}},
                     {"name": "y", "context": {"cluster": "c2", "user": "u1"}}],
        "current-context": "y",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    server, _, token, _ = connection_settings(str(tmp_path / "kubeconfig"))
    assert (server, token) == ("https://two:2", "one")


def test_a_context_without_a_user_has_no_credentials(tmp_path: Path) -> None:
    config = {"clusters": [{"name": "c", "cluster": {"server": "https://c:1"}}],
              "users": [{"name": "u", "user": {"token": "unused"}}],
              "contexts": [{"name": "x", "context": {"cluster": "c"}}],
              "current-context": "x"}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    assert connection_settings(str(tmp_path / "kubeconfig"))[2] is None


def test_kubeconfig_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kubeconfig(tmp_path / "from-env", server="https://env:1", user={"token": "env"})
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert connection_settings()[0] == "https://env:1"


def test_the_first_file_of_a_kubeconfig_list_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a" / "config", server="https://first:1")
    second = kubeconfig(tmp_path / "b" / "config", server="https://second:1")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(second)]))
    assert connection_settings()[0] == "https://first:1"


def test_an_explicit_kubeconfig_wins_over_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = kubeconfig(tmp_path / "explicit", server="https://explicit:1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env", server="https://env:1")))
    assert connection_settings(str(explicit))[0] == "https://explicit:1"


def test_home_kubeconfig_is_the_fallback(tmp_path: Path) -> None:
    kubeconfig(Path(os.environ["HOME"]) / ".kube" / "config", server="https://home:1")
    assert connection_settings()[0] == "https://home:1"


# --- inside a pod ------------------------------------------------------------------------------


async def test_in_cluster_service_account(
        pki: Pki, tmp_path: Path, service_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whoami_server(pki, pki.server_ip, tmp_path) as url:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])
        server, _, token, extra = connection_settings()
        assert server == url
        assert isinstance(token, TokenFile)
        assert token.path == service_account / "token"
        assert extra == {}
        # The mounted ca.crt is what the connection trusts; the token is sent.
        assert await whoami(None) == {"cn": None,
                                      "authorization": "Bearer service-account-token"}


def test_in_cluster_ipv6_host_is_bracketed(
        service_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert connection_settings()[0] == "https://[fd00:10:96::1]:443"


def test_the_service_account_needs_the_service_host(service_account: Path) -> None:
    # Token files alone (e.g. a pod with KUBERNETES_SERVICE_HOST stripped) do not count.
    kubeconfig(Path(os.environ["HOME"]) / ".kube" / "config", server="https://home:1")
    assert connection_settings()[0] == "https://home:1"


def test_without_a_token_file_it_is_not_in_cluster(
        no_real_cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    kubeconfig(Path(os.environ["HOME"]) / ".kube" / "config", server="https://home:1")
    assert connection_settings()[0] == "https://home:1"


def test_an_explicit_kubeconfig_wins_inside_a_pod(
        service_account: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    path = kubeconfig(tmp_path / "kubeconfig", server="https://explicit:1")
    assert connection_settings(str(path))[0] == "https://explicit:1"


def test_inside_a_pod_the_service_account_wins_over_kubeconfig_env(
        service_account: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env", server="https://env:1")))
    assert connection_settings()[0] == "https://10.96.0.1:443"


def test_an_empty_kubeconfig_variable_counts_as_unset(
        service_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", "")
    assert connection_settings()[0] == "https://10.96.0.1:443"


@pytest.mark.parametrize(("broken", "words"), [
    pytest.param("ca.crt", "ca.crt", id="no-ca"),
    pytest.param("port", "KUBERNETES_SERVICE_PORT", id="no-port"),
])
def test_incomplete_in_cluster_settings_are_clear_errors(
        service_account: Path, monkeypatch: pytest.MonkeyPatch, broken: str, words: str) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    if broken == "ca.crt":
        (service_account / "ca.crt").unlink()
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ClusterUnreachableError, match="cannot find a Kubernetes cluster") as info:
        connection_settings()
    assert words in str(info.value)


# --- errors --------------------------------------------------------------------------------------


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(ClusterUnreachableError) as info:
        connection_settings(str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "KUBECONFIG" in message
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_no_configuration_at_all_is_a_clear_error() -> None:
    with pytest.raises(ClusterUnreachableError, match=r"\.kube/config") as info:
        connection_settings()
    assert "ServiceAccount" in str(info.value)


async def test_api_client_reports_the_same_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterUnreachableError):
        await client.api_client(str(tmp_path / "missing"))


def _write(tmp_path: Path, text: str) -> str:
    (tmp_path / "kubeconfig").write_text(text)
    return str(tmp_path / "kubeconfig")


def _config(**parts: Any) -> str:
    config: dict[str, Any] = {
        "clusters": [{"name": "c", "cluster": {"server": "https://c:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    config.update(parts)
    return json.dumps(config)


@pytest.mark.parametrize(("text", "words"), [
    pytest.param("clusters: [\n", "while parsing", id="invalid-yaml"),
    pytest.param("", "no current-context", id="empty-file"),
    pytest.param(_config(**{"current-context": ""}), "kubectl config use-context",
                 id="no-current-context"),
    pytest.param(_config(**{"current-context": "gone"}), "no context named 'gone'",
                 id="unknown-context"),
    pytest.param(_config(contexts=[{"name": "x", "context": {"cluster": "nc", "user": "u"}}]),
                 "no cluster named 'nc'", id="unknown-cluster"),
    pytest.param(_config(contexts=[{"name": "x", "context": {"cluster": "c", "user": "nu"}}]),
                 "no user named 'nu'", id="unknown-user"),
    pytest.param(_config(clusters=[{"name": "c", "cluster": {"insecure-skip-tls-verify": True}}]),
                 "cluster 'c' in", id="no-server"),
    pytest.param(_config(clusters=[{"name": "c", "cluster": {
        "server": "https://c:1", "certificate-authority-data": "not base64!"}}]),
        "cannot find a Kubernetes cluster", id="ca-data-not-base64"),
    pytest.param(_config(clusters=[{"name": "c", "cluster": {
        "server": "https://c:1", "certificate-authority-data": b64("hello")}}]),
        "cannot find a Kubernetes cluster", id="ca-data-not-a-certificate"),
    pytest.param(_config(clusters=[{"name": "c", "cluster": {
        "server": "https://c:1", "certificate-authority": "missing.crt"}}]),
        "missing.crt", id="ca-file-missing"),
    pytest.param(_config(users=[{"name": "u", "user": {"tokenFile": "missing-token"}}]),
                 None, id="token-file-read-lazily"),
    pytest.param(_config(users=[{"name": "u", "user": {"exec": {"command": "aws"}}}]),
                 "exec plugin", id="exec-plugin"),
    pytest.param(_config(users=[{"name": "u", "user": {"auth-provider": {"name": "oidc"}}}]),
                 "auth provider", id="auth-provider"),
    pytest.param("- just\n- a list\n", "is not a kubeconfig: its top level is a list",
                 id="yaml-list"),
    pytest.param("just a string\n", "is not a kubeconfig: its top level is a str",
                 id="yaml-scalar"),
    pytest.param(_config(contexts=["x"]), "no context named 'x' (a list of {name, context}",
                 id="context-entry-not-a-mapping"),
])
def test_broken_kubeconfigs(tmp_path: Path, text: str, words: str | None) -> None:
    path = _write(tmp_path, text)
    if words is None:
        # A token file is read when a request needs it, not when the file is loaded.
        token = connection_settings(path)[2]
        with pytest.raises(FileNotFoundError):
            token()
        return
    with pytest.raises(ClusterUnreachableError) as info:
        connection_settings(path)
    assert words in str(info.value)


def test_a_client_key_that_does_not_match_its_certificate(pki: Pki, tmp_path: Path) -> None:
    path = _write(tmp_path, _config(users=[{"name": "u", "user": {
        "client-certificate-data": b64(pki.alice.cert), "client-key-data": b64(pki.bob.key)}}]))
    with pytest.raises(ClusterUnreachableError, match="cannot find a Kubernetes cluster"):
        connection_settings(path)


def test_the_client_key_is_not_left_on_disk(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    path = _write(tmp_path, _config(users=[{"name": "u", "user": {
        "client-certificate-data": b64(pki.alice.cert),
        "client-key-data": b64(pki.alice.key)}}]))
    connection_settings(path)
    assert list(scratch.iterdir()) == []
