"""Connecting to the Kubernetes API: the one place that decides where the cluster is and who
we are to it.

Inside a pod the ServiceAccount is used; elsewhere $KUBECONFIG or ~/.kube/config, as
kubectl would: the current context's server, its CA, and a client certificate or a bearer
token. Exec credential plugins are not supported (they need a shell-out per token); the
error says so. Everything else in the package goes through ``plugin_operator.kube``.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from plugin_operator.kube.rest import KubeApi

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Projected ServiceAccount tokens are rotated by the kubelet; re-read them this often.
TOKEN_REREAD_SECONDS = 60.0


class ClusterUnreachableError(RuntimeError):
    """No usable cluster configuration was found."""


class TokenFile:
    """A bearer token kept in a file that may be rewritten (a projected token)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = ""
        self._read_at = 0.0

    def __call__(self) -> str:
        if time.monotonic() - self._read_at > TOKEN_REREAD_SECONDS or not self._token:
            self._token = self.path.read_text().strip()
            self._read_at = time.monotonic()
        return self._token


def _in_cluster() -> tuple[str, ssl.SSLContext, TokenFile]:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    ca = SERVICE_ACCOUNT_DIR / "ca.crt"
    if not ca.is_file():  # ssl's own error would not name the file
        raise ClusterUnreachableError(f"cannot find a Kubernetes cluster: the ServiceAccount's "
                                      f"CA certificate {ca} is missing")
    context = ssl.create_default_context(cafile=str(ca))
    return f"https://{host}:{port}", context, TokenFile(SERVICE_ACCOUNT_DIR / "token")


def _material(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) or ``<key>`` (a file, relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / str(entry[key])).expanduser().read_bytes()
    return None


def _named(items: Any, name: str, what: str, path: Path) -> Mapping[str, Any]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("name") == name:
            found = item.get(what) or {}
            if not isinstance(found, Mapping):
                break
            return found
    raise ClusterUnreachableError(f"{path} has no {what} named {name!r} (a list of "
                                  f"{{name, {what}}} mappings)")


def _from_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, Any, dict[str, str]]:
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, Mapping):
        raise ClusterUnreachableError(f"{path} is not a kubeconfig: its top level is a "
                                      f"{type(config).__name__}, not a mapping")
    context_name = config.get("current-context")
    if not context_name:
        raise ClusterUnreachableError(f"{path} has no current-context; pick one with "
                                      "kubectl config use-context")
    context = _named(config.get("contexts"), context_name, "context", path)
    cluster = _named(config.get("clusters"), str(context.get("cluster")), "cluster", path)
    user = _named(config.get("users"), str(context.get("user")), "user", path) \
        if context.get("user") else {}
    base = path.parent
    server = str(cluster.get("server", "")).rstrip("/")
    if not server:
        raise ClusterUnreachableError(f"cluster {context.get('cluster')!r} in {path} has no "
                                      "server")
    tls = ssl.create_default_context()
    ca = _material(cluster, "certificate-authority", base)
    if ca:
        tls.load_verify_locations(cadata=ca.decode())
    if cluster.get("insecure-skip-tls-verify"):
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    server_name = str(cluster.get("tls-server-name") or "")
    certificate = _material(user, "client-certificate", base)
    key = _material(user, "client-key", base)
    if certificate and key:
        # The ssl module loads key pairs from files only: hand it a private, short-lived one.
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as pem:
            os.chmod(pem.name, 0o600)
            pem.write(certificate + b"\n" + key)
            pem.flush()
            tls.load_cert_chain(pem.name)
    token: Any = None
    if user.get("token"):
        token = str(user["token"])
    elif user.get("tokenFile"):
        token = TokenFile((base / str(user["tokenFile"])).expanduser())
    elif user.get("exec") or user.get("auth-provider"):
        raise ClusterUnreachableError(
            f"user {context.get('user')!r} in {path} gets its credentials from an exec plugin "
            "or auth provider, which plugin-operator does not run; use a kubeconfig with a "
            "client certificate or a token (e.g. kubectl create token)")
    extra = {"server_hostname": server_name} if server_name else {}
    return server, tls, token, extra


def connection_settings(kubeconfig: str | None = None
                        ) -> tuple[str, ssl.SSLContext, Any, dict[str, str]]:
    """Server, TLS context, token (or token source) and extra request options."""
    # An explicit path wins; inside a pod the ServiceAccount comes before $KUBECONFIG (as
    # kopf's login in handlers.py has it, so both talk to the same cluster); an empty
    # $KUBECONFIG counts as unset, as for kubectl.
    path_text = kubeconfig or None
    try:
        if path_text is None and (SERVICE_ACCOUNT_DIR / "token").exists() and \
                "KUBERNETES_SERVICE_HOST" in os.environ:
            server, tls, token = _in_cluster()
            return server, tls, token, {}
        path_text = path_text or os.environ.get("KUBECONFIG") or None
        path = Path(path_text.split(os.pathsep)[0] if path_text else "~/.kube/config")
        return _from_kubeconfig(path.expanduser())
    except (OSError, KeyError, ValueError, ssl.SSLError, yaml.YAMLError) as exc:
        raise ClusterUnreachableError(
            f"cannot find a Kubernetes cluster: {exc}. Run inside a pod with a "
            "ServiceAccount, or set KUBECONFIG to a kubeconfig file") from exc


async def api_client(kubeconfig: str | None = None) -> KubeApi:
    """A connected API client; the caller closes it (``await api.close()``)."""
    server, tls, token, extra = connection_settings(kubeconfig)
    # Many watches and calls run at once in the operator and the gateway.
    connector = aiohttp.TCPConnector(ssl=tls, limit=64)
    session = aiohttp.ClientSession(connector=connector)
    return KubeApi(session, server, token, server_hostname=extra.get("server_hostname"))
