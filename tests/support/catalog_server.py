"""A plugin catalog for tests: the part of grafana.com's plugin API that Grafana's installer
uses, serving the archives of a folder, and bundles served under base paths of their own.

    <root>/<plugin id>/<version>/<package>.zip     package: linux-amd64, any, darwin-arm64...
    <root>/<plugin id>/<version>/<package>.sha256  optional: publish this digest instead

``GET <base>/<id>/versions`` lists every version newest first with its packages (sha256,
md5, packageName, downloadUrl), as grafana.com does; ``GET <base>/<id>/versions/<version>/
download?os=&arch=`` answers the package for that system, else the ``any`` one. A bundle
mounted at another base answers ``<id>/versions`` with its index.json and other paths with
their files. Every request is recorded (path, query, the grafana-* headers).

Only aiohttp and the standard library: the e2e suite runs this file in a pod
(``python3 -c <source> --root DIR --port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

API_BASE = "/api/plugins"
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-(.+))?$")


def _order(version: str) -> tuple[Any, ...]:
    match = _SEMVER.match(version)
    if not match:
        return (-1, version)
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor), int(patch), pre is None, pre or "")


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Catalog:
    root: Path
    base: str = API_BASE
    bundles: dict[str, Path] = field(default_factory=dict)  # base path -> bundle catalog
    seen: list[Seen] = field(default_factory=list)

    def publish(self, plugin_id: str, version: str, archive: bytes,
                package: str = "linux-amd64", published_sha256: str | None = None) -> None:
        folder = self.root / plugin_id / version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{package}.zip").write_bytes(archive)
        if published_sha256 is not None:
            (folder / f"{package}.sha256").write_text(published_sha256)

    def downloads(self) -> list[str]:
        return [s.path for s in self.seen if s.path.endswith("/download")]

    def _versions(self, plugin_id: str) -> list[dict[str, Any]]:
        items = []
        folders = [p for p in (self.root / plugin_id).iterdir() if p.is_dir()]
        for folder in sorted(folders, key=lambda p: _order(p.name), reverse=True):
            packages = {}
            for zipped in sorted(folder.glob("*.zip")):
                data = zipped.read_bytes()
                override = zipped.with_suffix(".sha256")
                os_name, _, arch = zipped.stem.partition("-")
                query = f"?os={os_name}&arch={arch}" if arch else ""
                packages[zipped.stem] = {
                    "sha256": override.read_text().strip() if override.is_file()
                    else hashlib.sha256(data).hexdigest(),
                    "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                    "packageName": zipped.stem,
                    "downloadUrl": f"{self.base}/{plugin_id}/versions/{folder.name}/download"
                                   f"{query}"}
            items.append({"version": folder.name, "packages": packages,
                          "url": f"https://example.com/{plugin_id}", "grafanaDependency": ""})
        return items

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get(self.base + "/{id}/versions", self._list)
        app.router.add_get(self.base + "/{id}/versions/{version}/download", self._download)
        for base in self.bundles:
            app.router.add_get(base + "/{path:.+}", self._bundle)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append(Seen(request.path, dict(request.query),
                              {k.lower(): v for k, v in request.headers.items()
                               if k.lower().startswith("grafana-")}))
        response: web.StreamResponse = await handler(request)
        return response

    async def _list(self, request: web.Request) -> web.Response:
        plugin_id = request.match_info["id"]
        if not (self.root / plugin_id).is_dir():
            return web.json_response({"message": "Plugin not found"}, status=404)
        return web.json_response({"items": self._versions(plugin_id)})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        folder = self.root / request.match_info["id"] / request.match_info["version"]
        system = f"{request.query.get('os', '')}-{request.query.get('arch', '')}"
        for package in (system, "any"):
            if (folder / f"{package}.zip").is_file():
                return web.FileResponse(folder / f"{package}.zip",
                                        headers={"Content-Type": "application/zip"})
        return web.json_response({"message": "Package not found"}, status=404)

    async def _bundle(self, request: web.Request) -> web.StreamResponse:
        base = next(b for b in self.bundles if request.path.startswith(b + "/"))
        parts = [p for p in request.match_info["path"].split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise web.HTTPNotFound()
        if parts and parts[-1] == "versions":
            parts.append("index.json")
        path = self.bundles[base].joinpath(*parts)
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)


class CatalogServer:
    """A :class:`Catalog` on 127.0.0.1 in a thread of its own; ``stop`` takes it away and
    ``start`` brings it back on the same port."""

    def __init__(self, catalog: Catalog, port: int = 0) -> None:
        self.catalog = catalog
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + self.catalog.base

    def start(self) -> CatalogServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._runner = web.AppRunner(self.catalog.app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()
            self.port = self._runner.addresses[0][1]
            ready.set()

        def main() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        assert ready.wait(30), "the test catalog did not start"
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self._loop = self._runner = self._thread = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--base", default=API_BASE)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(args.root, args.base)
    print(json.dumps({"serving": str(args.root), "port": args.port}), flush=True)
    web.run_app(catalog.app(), port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
