"""schemathesis against the OpenAPI document the gateway serves, with both sample plugins
behind it: every answer must be documented (status, content type, body schema) and no
request may get a 5xx that the gateway cannot explain."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.gateway.conftest import GO_PLUGIN_ID, PYTHON_PLUGIN_ID, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
# Examples per operation and way of generating them (random or known ids, valid or not):
# more where bodies are parsed; about 2,000 requests in all, well under a minute.
EXAMPLES = 10
PARSED_BODY_EXAMPLES = 100
KNOWN = {"uid": ["py-uid", "go-uid"], "pluginId": [PYTHON_PLUGIN_ID, GO_PLUGIN_ID]}
# 5xx answers the gateway gives on purpose, each saying why (none is expected here: both
# backends are up, nothing is overloaded or quarantined).
EXPLAINED_5XX = {"plugin.unavailable", "plugin.overloaded", "request.bodiesBusy",
                 "query.quarantined", "query.stillRunning", "plugin.lostWhileServing",
                 "plugin.timeout"}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def with_known_datasources(case: Any, uids: list[str]) -> Any:
    """Point the queries of a generated /api/ds/query body at real datasources."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("queries"), list):
        for index, query in enumerate(body["queries"]):
            if isinstance(query, dict):
                query["datasource"] = {"uid": uids[index % len(uids)]}
    return case


def problem(case: Any, response: requests.Response) -> str | None:
    """Why this answer is wrong, or None."""
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as exc:  # schemathesis raises one of many failure types
        return f"{type(exc).__name__}: {exc}"
    if response.status_code >= 500:
        try:
            reason = response.json().get("messageId", "")
        except ValueError:
            reason = ""
        if reason not in EXPLAINED_5XX:
            return f"unexplained {response.status_code}: {response.text[:300]}"
    return None


def run(url: str, statuses: Counter[int]) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
    found: list[str] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        fixed = [{}, {name: KNOWN[name][0] for name in names if name in KNOWN}] \
            if names & set(KNOWN) else [{}]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in fixed:
                strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)
                if operation.path == "/api/ds/query":
                    strategy = st.tuples(strategy, st.permutations(KNOWN["uid"])).map(
                        lambda pair: with_known_datasources(*pair))

                examples = PARSED_BODY_EXAMPLES if operation.path in (
                    "/api/ds/query", "/api/live/publish") else EXAMPLES

                @settings(max_examples=examples, deadline=None, database=None,
                          derandomize=True, phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def check(case: Any) -> None:
                    # The gateway serves anonymously here; a made-up token would only be
                    # refused (401) before anything else is tried.
                    if case.headers:
                        case.headers.pop("Authorization", None)
                    response = case.call(base_url=url, session=session, timeout=10)
                    statuses[response.status_code] += 1
                    wrong = problem(case, response)
                    if wrong:
                        found.append(f"{case.method} {case.formatted_path} "
                                     f"{json.dumps(case.body, default=str)[:200]}: {wrong}")

                try:
                    check()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to break
                except Exception as exc:  # an error of the test itself, not of an answer
                    found.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    return found


async def test_the_openapi_document_holds_for_generated_requests(stack: Stack) -> None:
    statuses: Counter[int] = Counter()
    problems = await asyncio.to_thread(run, stack.url, statuses)
    assert not problems, "\n".join(problems[:20])
    # The requests reached the plugins too, not only the gateway's refusals.
    assert statuses[200] > 50, statuses
