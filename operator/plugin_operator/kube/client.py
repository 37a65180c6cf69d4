"""Connecting to the Kubernetes API: the one place that decides where the cluster is.

Inside a pod the ServiceAccount is used; elsewhere $KUBECONFIG or ~/.kube/config, as
kubectl would. Everything else in the package goes through ``plugin_operator.kube``.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ClusterUnreachableError(RuntimeError):
    """No usable cluster configuration was found."""


def _in_cluster() -> bool:
    return IN_CLUSTER_TOKEN.exists()


async def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A configured API client; the caller closes it (``async with`` works)."""
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path is None and _in_cluster():
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(config_file=path,
                                          client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise ClusterUnreachableError(
            f"cannot find a Kubernetes cluster: {exc}. Run inside a pod with a "
            "ServiceAccount, or set KUBECONFIG to a kubeconfig file") from exc
    # Many watches and calls run at once in the operator and the gateway.
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)
