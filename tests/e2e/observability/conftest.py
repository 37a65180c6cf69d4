"""The chart's dashboards against a real Prometheus: a release of the chart with the
examples (testdata-python and its DataSourceInstance) running, and Debian's Prometheus, a
host process of this test on 127.0.0.1, scraping the operator, the gateway and the plugin
hosts with the labels a PodMonitor or ServiceMonitor gives them (namespace and pod; the
operator's own namespace label kept, as the chart's ServiceMonitor's honorLabels does).

Debian's Prometheus has no Kubernetes service discovery: the test keeps file_sd files of the
pods' IPs up to date, which this machine, the local cluster's node, reaches directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import scoped_namespace
from tests.e2e.install import Release, install_release
from tests.e2e.journey.conftest import (  # noqa: F401 - fixtures used by this suite
    EXAMPLES,
    QUERIER,
    Gateway,
    Prometheus,
    ScrapeJob,
    helm_binary,
    running_prometheus,
    scrape_jobs,
    signed_testdata,
    wait_for,
)
from tests.e2e.kube import Cluster

PLUGIN = "testdata-python"  # examples/plugin-testdata-python.yaml
DATASOURCE = "testdata"  # examples/datasourceinstance-testdata.yaml
OUTSIDER = "dashboards-outsider"  # a ServiceAccount the gateway refuses


@pytest.fixture(scope="session")
def plugin_namespace(cluster: Cluster) -> Iterator[str]:
    with scoped_namespace(cluster, "dashboards") as name:
        yield name


@pytest.fixture(scope="session")
def release(cluster: Cluster, helm_binary: Path, plugin_namespace: str,  # noqa: F811
            signed_testdata: tuple[Path, Path],  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    installed = install_release(
        cluster, helm_binary, tmp_path_factory.mktemp("dashboards-helm"),
        plugin_namespaces=[plugin_namespace],
        trusted_keys={"dashboards-signer.asc": signed_testdata[1].read_text()},
        prefix="po-dash",
        values={"operator": {"backoff": {"initial": "1s", "max": "10s", "resetAfter": "1m"}},
                # As a user turns them on; the test reads them back from the cluster.
                "monitoring": {"dashboards": {"enabled": True}}})
    try:
        yield installed
    finally:
        installed.uninstall()


@pytest.fixture(scope="session")
def examples_running(cluster: Cluster, release: Release, plugin_namespace: str,
                     signed_testdata: tuple[Path, Path]) -> None:  # noqa: F811
    """The examples as they are (the Plugin has a memory limit), Running and Healthy."""
    ns = plugin_namespace
    configmap = cluster.kubectl("-n", ns, "create", "configmap", "testdata-python-archive",
                                f"--from-file=plugin.zip={signed_testdata[0]}",
                                "--dry-run=client", "-o", "json").stdout
    cluster.kubectl("-n", ns, "apply", "-f", "-", stdin=configmap)
    cluster.kubectl("-n", ns, "apply", "-f", str(EXAMPLES / "plugin-testdata-python.yaml"),
                    "-f", str(EXAMPLES / "datasourceinstance-testdata.yaml"))

    def diagnostics() -> str:
        return (cluster.kubectl("-n", ns, "get", "plugins,datasourceinstances,pods", "-o",
                                "wide", check=False).stdout + release.diagnostics())

    wait_for(f"Plugin {PLUGIN} Running", lambda: cluster.get(
        ns, "plugin", PLUGIN).get("status", {}).get("phase") == "Running",
        timeout_s=240, diagnostics=diagnostics)
    wait_for(f"DataSourceInstance {DATASOURCE} healthy", lambda: cluster.get(
        ns, "datasourceinstance", DATASOURCE).get("status", {}).get("health", {})
        .get("status") == "OK", timeout_s=180, diagnostics=diagnostics)


def _service_account_token(cluster: Cluster, namespace: str, name: str,
                           rules: list[dict[str, object]] | None) -> str:
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}]
    if rules is not None:
        objects += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": name}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}]
    cluster.apply(namespace, *objects)
    return cluster.kubectl("-n", namespace, "create", "token", name,
                           "--duration=1h").stdout.strip()


@pytest.fixture(scope="session")
def gateways(cluster: Cluster, release: Release,
             plugin_namespace: str) -> tuple[Gateway, Gateway]:
    """The gateway's Service for a querier allowed to query, and for one with no role."""
    service = cluster.get(release.namespace, "service", release.gateway_deployment)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    allowed = _service_account_token(cluster, plugin_namespace, QUERIER, [
        {"apiGroups": ["plugin-operator.dev"], "resources": ["datasourceinstances", "plugins"],
         "verbs": ["get", "list", "query"]}])
    refused = _service_account_token(cluster, plugin_namespace, OUTSIDER, None)
    return Gateway(url, allowed), Gateway(url, refused)


def prometheus_config(jobs: list[ScrapeJob], targets_dir: Path) -> str:
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s",
                   "evaluation_interval": "2s"},
        "scrape_configs": [{
            "job_name": job.name,
            # The operator's series name each Plugin's namespace: kept, not renamed to
            # exported_namespace, as the chart's ServiceMonitor asks.
            "honor_labels": job.component == "operator",
            "file_sd_configs": [{"files": [str(targets_dir / f"{job.name}.json")],
                                 "refresh_interval": "2s"}],
        } for job in jobs],
    }
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="session")
def prometheus(cluster: Cluster, release: Release, plugin_namespace: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with running_prometheus(cluster, scrape_jobs(release, plugin_namespace),
                            tmp_path_factory.mktemp("dashboards-prometheus"),
                            prometheus_config) as handle:
        yield handle
