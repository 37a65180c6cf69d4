"""``POST /api/ds/query``: queries grouped by datasource, each group sent to its plugin,
answered in Grafana's JSON shape or, when asked for, as Arrow frames."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import MultipartWriter, web

from plugin_operator.gateway import access, context, failures, query
from plugin_operator.gateway.errors import GatewayError, from_plugin_error
from plugin_operator.gateway.http import PLUGIN_LABEL, UID_LABEL, lookup, namespace
from plugin_operator.gateway.limits import check_result_size
from plugin_operator.gateway.metrics import UNKNOWN
from plugin_operator.gateway.quarantine import fingerprint, lost_while_serving
from plugin_operator.gateway.routing import ResolvedDataSource
from plugin_operator.gateway.upstream import RawDataResponse
from plugin_operator.protocol import convert
from plugin_operator.protocol.errors import PluginError
from plugin_operator.protocol.models import FrameFormat

if TYPE_CHECKING:
    from plugin_operator.gateway.server import Gateway

log = logging.getLogger("plugin_operator.gateway")

ARROW_FILE = "application/vnd.apache.arrow.file"
MAX_CONCURRENT_DATASOURCES = 8  # Grafana's limit for one /api/ds/query


class QueryRoutes:
    """The route; ``gateway`` supplies the routing table, authentication, RBAC and admission."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_routes(self, router: web.UrlDispatcher) -> None:
        limits = self.gateway.config.limits
        query_body = self.gateway.expect(limits.query_body_bytes, "--max-query-body-bytes")
        router.add_post("/api/ds/query", self.ds_query, expect_handler=query_body)

    async def ds_query(self, request: web.Request) -> web.StreamResponse:
        # Who is asking before reading a byte; the datasources are named in the body, so
        # each one is authorized after parsing it (within tight limits) and before any call.
        gateway = self.gateway
        tracing = gateway.tracing
        with tracing.span("admission.authenticate"):
            identity = await gateway.identity(request)
        limits = gateway.config.limits
        parsed = query.parse_query_request(
            await gateway.body(request, limits.query_body_bytes, "--max-query-body-bytes"),
            int(time.time() * 1000), limits)
        targets: dict[str, ResolvedDataSource] = {}
        request[UID_LABEL] = request[PLUGIN_LABEL] = UNKNOWN
        with tracing.span("datasources.resolve"):
            for uid in parsed.by_datasource:
                targets[uid] = lookup(lambda uid=uid: gateway.table.datasource(  # type: ignore[misc]
                    uid, namespace(request)))
        plugins = sorted({t.plugin.spec.plugin_id for t in targets.values()})
        request[PLUGIN_LABEL] = plugins[0] if len(plugins) == 1 else "mixed"
        request[UID_LABEL] = next(iter(targets)) if len(targets) == 1 else "mixed"
        with tracing.span("admission.authorize"):
            for resolved in targets.values():
                key = resolved.record.key
                await gateway.authorize(identity, access.query_datasource(key.namespace,
                                                                          key.name), request)
        arrow = ARROW_FILE in request.headers.get("Accept", "")
        fmt = FrameFormat.ARROW if arrow else FrameFormat.JSON

        async def one(uid: str) -> dict[str, RawDataResponse]:
            resolved = targets[uid]
            plugin_id = resolved.plugin.spec.plugin_id
            batch = parsed.by_datasource[uid]
            suspect = b""
            # Fingerprints cost only while something is refused.
            if gateway.quarantine or gateway.timed_out:
                suspect = fingerprint(str(resolved.record.key), [q.json for q in batch.queries])
                gateway.quarantine.check(suspect)
                gateway.timed_out.check(suspect)
            message = convert.query_data_message(
                gateway.contexts.get(resolved.plugin, resolved.settings, identity.username,
                                     resolved.record.key.namespace),
                batch.queries, context.forwarded_headers(request.headers, uid,
                                                         gateway.config.context.org_id,
                                                         resolved.record.spec.json_data), fmt)
            with gateway.admitted(plugin_id):
                try:
                    raw = await gateway.upstream.query_data_message(
                        plugin_id, resolved.endpoints, message)
                except PluginError as exc:
                    if failures.lost_while_serving(exc):
                        gateway.quarantine.add(suspect or fingerprint(
                            str(resolved.record.key), [q.json for q in batch.queries]),
                            plugin_id)
                        log.warning("a backend of %s stopped while serving a query of %s; "
                                    "that query is quarantined: %s", plugin_id,
                                    resolved.record.key, exc)
                        raise lost_while_serving(plugin_id, gateway.quarantine.seconds) from exc
                    if exc.code is grpc.StatusCode.DEADLINE_EXCEEDED:
                        gateway.timed_out.add(suspect or fingerprint(
                            str(resolved.record.key), [q.json for q in batch.queries]),
                            plugin_id)
                        raise GatewayError(
                            504, f"Query data error: {exc.message}: the plugin did not answer "
                                 f"in time; the same query is refused for the next "
                                 f"{gateway.timed_out.seconds:g} s, while the plugin may still "
                                 "be working on it", "plugin.timeout") from exc
                    raise from_plugin_error(exc, other_message=f"Query data error: "
                                            f"{exc.message}") from exc
            check_result_size(((r.frames, r.format) for r in raw.values()), limits)
            return raw

        async def limited(uid: str) -> dict[str, RawDataResponse]:
            async with limit:
                return await one(uid)

        uids = list(parsed.by_datasource)
        raw: dict[str, RawDataResponse] = {}
        failed: dict[str, query.QueryResult] = {}
        if len(uids) == 1:
            # The common case: no tasks, no semaphore; its error is the request's error.
            raw = await one(uids[0])
            outcomes: list[Any] = []
        else:
            limit = asyncio.Semaphore(MAX_CONCURRENT_DATASOURCES)
            outcomes = await asyncio.gather(*(limited(uid) for uid in uids),
                                            return_exceptions=True)
        for uid, outcome in zip(uids if outcomes else [], outcomes, strict=True):
            if isinstance(outcome, GatewayError):
                if len(uids) == 1:
                    raise outcome
                failed.update(query.failed_results(
                    [q.ref_id for q in parsed.by_datasource[uid].queries], outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                raw.update(outcome)
        if arrow:
            return await self._arrow_response(request, raw, failed)
        results = {ref: query.result_from_response(r.frames, r.format, r.error, r.status,
                                                   r.error_source) for ref, r in raw.items()}
        results.update(failed)
        return web.Response(status=query.overall_status(results),
                            body=query.encode_results(results), content_type="application/json")

    async def _arrow_response(self, request: web.Request, raw: Mapping[str, RawDataResponse],
                              failed: Mapping[str, query.QueryResult]) -> web.StreamResponse:
        """Arrow frames exactly as the plugin wrote them, one multipart part per frame."""
        writer = MultipartWriter("mixed")
        any_error = bool(failed)
        for ref_id in sorted(raw):
            response = raw[ref_id]
            if response.error:
                any_error = True
                failed = {**failed, ref_id: query.result_from_response(
                    [], FrameFormat.JSON, response.error, response.status,
                    response.error_source)}
                continue
            if response.format is not FrameFormat.ARROW:
                # A plugin that ignored the requested format; hand its JSON on as JSON.
                for frame in response.frames:
                    writer.append(frame, {"Content-Type": "application/json",
                                          "X-Grafana-Ref-Id": ref_id})
                continue
            for frame in response.frames:
                writer.append(frame, {"Content-Type": ARROW_FILE, "X-Grafana-Ref-Id": ref_id})
        for ref_id in sorted(failed):
            writer.append(query.encode_results({ref_id: failed[ref_id]}),
                          {"Content-Type": "application/json", "X-Grafana-Ref-Id": ref_id})
        return web.Response(status=400 if any_error else 200, body=writer)
