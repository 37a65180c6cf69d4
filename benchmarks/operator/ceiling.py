"""The apiserver's own ceiling for part (b) of bench_operator.py, and the tools around it.

- ``ceiling``: a minimal client that does only the apiserver work the operator must do for a
  fresh namespace to converge, and nothing else: it lists the Plugins and
  DataSourceInstances (paged, as a watch's initial list is), reads the shared ConfigMap and
  Secret once, and then, for every Plugin, creates its backend pod, server-side-applies its
  two Services and writes one JSON merge patch of its status; for every DataSourceInstance,
  one merge patch of its status; plus as many Events per object as the operator posted. The
  bodies are the operator's own (pod and Services from podspec.py, statuses copied from what
  the operator wrote in the same run), serialised before the clock starts; only the Plugin's
  uid (from the list) is filled in. ``concurrency`` requests are in flight at once over as
  many HTTP/1.1 connections.
- ``create_objects``: the benchmark's set-up (many creates at once, faster than kubectl).
- ``Convergence``: a watch that notes when every object's observedGeneration matches.
- ``request_counts``: the apiserver's own request counters, to count what a client did.

Run as a script it measures the ceiling once and prints one JSON line:

    ceiling.py KUBECONFIG NAMESPACE TEMPLATES.json CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from plugin_operator.kube.client import connection_settings  # noqa: E402

GROUP_VERSION = "plugin-operator.dev/v1alpha1"
PLURALS = ("plugins", "datasourceinstances")
UID_MARK = "__PLUGIN_UID__"
NAMESPACE_MARK = "__NAMESPACE__"


class Api:
    """Bare aiohttp requests with pre-serialised bodies: as little client work as can be."""

    def __init__(self, kubeconfig: Path, connections: int) -> None:
        server, tls, token, extra = connection_settings(str(kubeconfig))
        self.server = server
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token if isinstance(token, str) else token()}"
        self.extra = {"server_hostname": extra["server_hostname"]} if extra else {}
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=tls, limit=connections), timeout=aiohttp.ClientTimeout(total=120))

    async def call(self, method: str, path: str, body: bytes | None = None,
                   content_type: str = "application/json", ok: tuple[int, ...] = ()) -> bytes:
        headers = {**self.headers, "Content-Type": content_type}
        async with self.session.request(method, self.server + path, data=body,
                                        headers=headers, **self.extra) as response:
            raw = await response.read()
            if response.status >= 300 and response.status not in ok:
                raise RuntimeError(f"{method} {path}: {response.status} {raw[:300]!r}")
            return raw

    async def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = "?limit=500" + (f"&continue={token}" if token else "")
            page = json.loads(await self.call("GET", path + query))
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def close(self) -> None:
        await self.session.close()


def ns_path(namespace: str, plural: str, name: str = "", sub: str = "") -> str:
    base = (f"/api/v1/namespaces/{namespace}/{plural}" if plural in
            ("pods", "services", "events", "secrets", "configmaps") else
            f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{plural}")
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


async def run_all(requests: Iterator[tuple[str, str, bytes, str]], concurrency: int,
                  api: Api) -> int:
    """Send every request, ``concurrency`` at a time; returns how many were sent."""
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for method, path, body, content_type in requests:
            # 409: the object exists (a create), the same answer the operator tolerates.
            await api.call(method, path, body, content_type, ok=(409,))
            sent += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


# --- the ceiling ----------------------------------------------------------------------------

def _named(text: str, old: str, new: str) -> str:
    """``text`` with the object name ``old`` replaced by ``new`` where it stands as a name."""
    return re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w])", new, text)


async def ceiling(kubeconfig: Path, namespace: str, templates: dict[str, Any],
                  concurrency: int) -> dict[str, Any]:
    """The fastest this namespace's objects can be brought to convergence (see the module)."""
    # Everything that does not depend on the apiserver's answers is prepared off the clock.
    plugin_template = templates["plugin_name"]
    datasource_template = templates["datasource_name"]
    bodies = {kind: json.dumps(templates[kind]).replace(NAMESPACE_MARK, namespace) for kind in
              ("pod", "service", "peers_service", "plugin_status", "datasource_status",
               "plugin_event", "datasource_event")}
    events = templates["events_per_object"]
    api = Api(kubeconfig, concurrency)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    plugins, datasources = await asyncio.gather(
        api.list(ns_path(namespace, "plugins")),
        api.list(ns_path(namespace, "datasourceinstances")))
    await api.call("GET", ns_path(namespace, "configmaps", "archive"))
    await api.call("GET", ns_path(namespace, "secrets", "creds"))
    listed = time.perf_counter()

    def for_plugin(text: str, plugin: dict[str, Any]) -> bytes:
        meta = plugin["metadata"]
        return (_named(text, plugin_template, meta["name"]).replace(UID_MARK, meta["uid"])
                .encode())

    def requests() -> Iterator[tuple[str, str, bytes, str]]:
        apply = "application/apply-patch+yaml"
        merge = "application/merge-patch+json"
        query = "?fieldManager=plugin-operator&force=true"
        for plugin in plugins:
            name = plugin["metadata"]["name"]
            pod = for_plugin(bodies["pod"], plugin)
            yield "POST", ns_path(namespace, "pods"), pod, "application/json"
            for kind in ("service", "peers_service"):
                body = for_plugin(bodies[kind], plugin)
                service = json.loads(body)["metadata"]["name"]
                yield "PATCH", ns_path(namespace, "services", service) + query, body, apply
            yield ("PATCH", ns_path(namespace, "plugins", name, "status"),
                   for_plugin(bodies["plugin_status"], plugin), merge)
            for _ in range(events["plugins"]):
                yield ("POST", ns_path(namespace, "events"),
                       for_plugin(bodies["plugin_event"], plugin), "application/json")
        for datasource in datasources:
            meta = datasource["metadata"]
            plugin_name = datasource["spec"]["pluginRef"]["name"]
            text = _named(_named(bodies["datasource_status"], datasource_template, meta["name"]),
                          plugin_template, plugin_name)
            yield ("PATCH", ns_path(namespace, "datasourceinstances", meta["name"], "status"),
                   text.encode(), merge)
            for _ in range(events["datasourceinstances"]):
                event = _named(bodies["datasource_event"], datasource_template, meta["name"])
                yield ("POST", ns_path(namespace, "events"),
                       event.replace(UID_MARK, meta["uid"]).encode(), "application/json")

    try:
        sent = await run_all(requests(), concurrency, api)
    finally:
        await api.close()
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"concurrency": concurrency, "plugins": len(plugins),
            "datasources": len(datasources), "writes": sent, "elapsed_s": elapsed,
            "list_s": listed - started, "client_cpu_s": cpu}


# --- set-up ---------------------------------------------------------------------------------

async def create_objects(kubeconfig: Path, namespace: str, objects: list[dict[str, Any]],
                         concurrency: int = 32) -> None:
    api = Api(kubeconfig, concurrency)
    try:
        def requests() -> Iterator[tuple[str, str, bytes, str]]:
            for obj in objects:
                plural = {"Plugin": "plugins", "DataSourceInstance": "datasourceinstances",
                          "Namespace": "", "ServiceAccount": "serviceaccounts",
                          "Secret": "secrets", "ConfigMap": "configmaps"}[obj["kind"]]
                path = ("/api/v1/namespaces" if not plural else
                        ns_path(namespace, plural) if obj["kind"] in
                        ("Plugin", "DataSourceInstance") else
                        f"/api/v1/namespaces/{namespace}/{plural}")
                yield "POST", path, json.dumps(obj).encode(), "application/json"
        await run_all(requests(), concurrency, api)
    finally:
        await api.close()


async def request_counts(kubeconfig: Path) -> dict[str, float]:
    """apiserver_request_total, summed per 'VERB resource[/subresource] code'."""
    api = Api(kubeconfig, 1)
    try:
        text = (await api.call("GET", "/metrics")).decode()
    finally:
        await api.close()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        resource_ = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = f"{labels.get('verb')} {resource_} {labels.get('code')}"
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def count_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(after[k] - before.get(k, 0.0)) for k in sorted(after)
            if after[k] - before.get(k, 0.0) >= 1}


# --- convergence ----------------------------------------------------------------------------

class Convergence:
    """Watches a namespace's Plugins and DataSourceInstances from a thread and notes the
    wall time at which the last one's status.observedGeneration came to match."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.pending: set[tuple[str, str]] = set()
        self.converged_at: float | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._run(),), daemon=True)
        self._thread.start()
        if not self.ready.wait(300):
            raise TimeoutError("the convergence watch did not start")

    async def _run(self) -> None:
        api = Api(self.kubeconfig, 4)
        self._api = api
        try:
            versions = []
            for plural in PLURALS:
                path = ns_path(self.namespace, plural)
                page = json.loads(await api.call("GET", path))  # unpaged: one resourceVersion
                for item in page["items"]:
                    if not self._converged(item):
                        self.pending.add((plural, item["metadata"]["name"]))
                versions.append((path, page["metadata"]["resourceVersion"]))
            self.ready.set()
            await asyncio.gather(*(self._watch(p, rv) for p, rv in versions))
        except (asyncio.CancelledError, aiohttp.ClientError):
            pass  # stopped
        finally:
            self.ready.set()
            await api.close()

    @staticmethod
    def _converged(item: dict[str, Any]) -> bool:
        generation = item["metadata"].get("generation")
        return (item.get("status") or {}).get("observedGeneration") == generation

    async def _watch(self, path: str, version: str) -> None:
        plural = path.rsplit("/", 1)[1]
        url = (f"{self._api.server}{path}?watch=1&resourceVersion={version}"
               "&timeoutSeconds=3600")
        async with self._api.session.get(url, headers=self._api.headers,
                                          timeout=aiohttp.ClientTimeout(total=None),
                                          **self._api.extra) as response:
            async for line in response.content:
                event = json.loads(line)
                obj = event["object"]
                key = (plural, obj["metadata"]["name"])
                if event["type"] == "DELETED" or self._converged(obj):
                    self.pending.discard(key)
                else:
                    self.pending.add(key)
                if not self.pending and self.converged_at is None:
                    self.converged_at = time.time()
                    self.done.set()

    def wait(self, timeout: float) -> float | None:
        """Wall time of convergence, or None after ``timeout`` seconds."""
        self.done.wait(timeout)
        return self.converged_at

    def stop(self) -> None:
        def cancel() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout=30)


def main() -> int:
    kubeconfig, namespace, templates, concurrency = sys.argv[1:5]
    result = asyncio.run(ceiling(Path(kubeconfig), namespace,
                                 json.loads(Path(templates).read_text()), int(concurrency)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
