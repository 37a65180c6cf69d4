"""The OpenAPI 3.1 document of the gateway's HTTP API (served at /api/openapi.json).

Every status a route can answer is listed, with the body it comes with: schemathesis runs
against this document in tests/integration/gateway/test_gateway_openapi.py."""

from __future__ import annotations

from typing import Any

from .limits import Limits
from .timerange import MAX_EPOCH_MS

_DEFAULTS = Limits()
_JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


_CALLER = {"401": _error("No bearer token, or one the apiserver rejects"),
           "403": _error("RBAC denies the call")}
_FOUND = {"404": _error("No such datasource or plugin (or the plugin does not implement the "
                        "call)"),
          "409": _error("The uid or pluginId exists in several namespaces: add ?namespace=")}
_BACKEND = {
    "500": _error("The plugin failed the call"),
    "502": _error("The backend stopped while serving the call"),
    "503": _error("No ready backend, the plugin is overloaded, the gateway holds too many "
                  "request bodies, or a quarantined or still-running query (with "
                  "Retry-After)"),
    "504": _error("The plugin did not answer within the call timeout")}
_BAD_INPUT = {"400": _error("Invalid input; the message says what to fix")}
_TOO_LARGE = {"413": _error("The body is larger than the route accepts")}
_NAME = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
_UID = {"name": "uid", "in": "path", "required": True, "schema": _NAME,
        "description": "DataSourceInstance spec.uid"}
_PLUGIN_ID = {"name": "pluginId", "in": "path", "required": True, "schema": _NAME}
_PATH = {"name": "path", "in": "path", "required": True, "schema": _NAME,
         "description": "The plugin's resource or stream path"}
_NAMESPACE = {"name": "namespace", "in": "query", "required": False,
              "schema": {"type": "string"},
              "description": "Only needed when a uid or pluginId exists in several namespaces"}
_TIME = {"type": ["string", "integer"], "examples": ["now-1h", "1700000000000"],
         "pattern": r"^ *(now([+-][0-9]{1,12}(ms|s|m|h|d|w|M|y))?(/[smhdwMy])?|[0-9]{1,13}) *$",
         "minimum": 0, "maximum": MAX_EPOCH_MS,
         "description": "Epoch milliseconds (1970-2262) or relative to now: now, now-6h, now/d"}
_ANY_BODY = {"required": False, "content": {"*/*": {"schema": {}}}}
_RESOURCE_RESPONSES = {"default": {"description": "Status, headers and body from the plugin, "
                                                  "streamed chunk by chunk"},
                       **_BAD_INPUT, **_CALLER, **_FOUND, **_TOO_LARGE, **_BACKEND}
_SSE = {"description": "Server-Sent Events: `event: subscribed`, then one `data:` event per "
                       "packet, `event: end` when the plugin ends the stream",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}
_PUBLISHED = {"description": "Published", "content": {_JSON: {"schema": {"type": "object"}}}}


def _any_method(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    operation = {"summary": summary, "parameters": params, "requestBody": _ANY_BODY,
                 "responses": _RESOURCE_RESPONSES}
    return dict.fromkeys(("get", "post", "put", "patch", "delete"), operation)


def _stream(scope: str, ident: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {"summary": f"Subscribe to a {scope} stream as Server-Sent Events "
                           "(SubscribeStream, then the channel's shared RunStream)",
                "parameters": [ident, _PATH, _NAMESPACE,
                               {"name": "data", "in": "query", "schema": {"type": "string"},
                                "description": "JSON the plugin gets with SubscribeStream"}],
                "responses": {"200": _SSE, **_BAD_INPUT, **_CALLER, **_FOUND, **_BACKEND}},
        "post": {"summary": f"PublishStream into a {scope} channel",
                 "parameters": [ident, _PATH, _NAMESPACE], "requestBody": _ANY_BODY,
                 "responses": {"200": _PUBLISHED, **_BAD_INPUT, **_CALLER, **_FOUND,
                               **_TOO_LARGE, **_BACKEND}}}


def _schemas() -> dict[str, Any]:
    limits = _DEFAULTS
    return {
        "Error": {"type": "object", "required": ["message"], "properties": {
            "message": {"type": "string"}, "messageId": {"type": "string"},
            "statusCode": {"type": "integer"}}},
        "MetricRequest": {"type": "object", "required": ["queries"], "properties": {
            "from": {**_TIME, "default": "now-6h"},
            "to": {**_TIME, "default": "now"},
            "queries": {"type": "array", "minItems": 1,
                        "maxItems": limits.queries_per_request,
                        "description": "At most --max-queries-per-request queries",
                        "items": {"$ref": "#/components/schemas/DataQuery"}}}},
        "DataQuery": {
            "type": "object", "required": ["datasource"], "additionalProperties": True,
            "description": "refIds are unique within a request; the whole query is handed to "
                           "the plugin as its JSON model",
            "properties": {
                "refId": {"type": "string", "default": "A"},
                "datasource": {"oneOf": [
                    {"type": "object", "required": ["uid"], "properties": {
                        "uid": {"type": "string", "minLength": 1},
                        "type": {"type": "string"}}},
                    {"type": "string", "minLength": 1,
                     "description": "The uid (dashboards from before Grafana 8.3)"}]},
                "maxDataPoints": {"type": "integer", "default": 100, "minimum": 0,
                                  "maximum": limits.max_data_points},
                "intervalMs": {"type": "integer", "default": 1000, "minimum": 0},
                "queryType": {"type": "string"}}},
        "QueryDataResponse": {"type": "object", "properties": {"results": {
            "type": "object", "additionalProperties": {"type": "object", "properties": {
                "status": {"type": "integer"}, "error": {"type": "string"},
                "errorSource": {"type": "string", "enum": ["plugin", "downstream", ""]},
                "frames": {"type": "array", "items": {
                    "type": "object", "description": "Grafana data frame JSON"}}}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["OK", "ERROR", "UNKNOWN"]},
            "message": {"type": "string"}, "details": {"type": "object"}}},
        "LivePublish": {"type": "object", "required": ["channel"], "properties": {
            "channel": {"type": "string", "pattern": "^(ds|plugin)/[^/]+/.+$",
                        "examples": ["ds/my-uid/counter"]},
            "data": {"description": "Handed to PublishStream as JSON"}}},
    }


def _health(summary: str, ident: dict[str, Any]) -> dict[str, Any]:
    health = {"content": {_JSON: {"schema": {"$ref": "#/components/schemas/Health"}}}}
    return {"get": {"summary": summary, "parameters": [ident, _NAMESPACE], "responses": {
        "200": {"description": "status OK", **health},
        "400": {"description": "status ERROR or UNKNOWN", **health},
        **_CALLER, **_FOUND, **_BACKEND}}}


def _read(summary: str, params: list[dict[str, Any]], answer: dict[str, Any],
          errors: dict[str, Any]) -> dict[str, Any]:
    """A read-only registry route; POST, PUT and DELETE on it answer 405 (use kubectl)."""
    return {"get": {"summary": summary, "parameters": [*params, _NAMESPACE], "responses": {
        "200": {"description": "Found", "content": {_JSON: {"schema": answer}}},
        **_CALLER, **errors}}}


def _registry_paths() -> dict[str, Any]:
    obj = {"type": "object"}
    name = {"name": "name", "in": "path", "required": True, "schema": _NAME,
            "description": "DataSourceInstance spec.name"}
    ident = {"name": "id", "in": "path", "required": True, "schema": _NAME,
             "description": "The datasource's numeric id (Grafana's dtos.DataSource id)"}
    return {
        "/api/datasources": _read("DataSourceInstances the caller may get, in Grafana's "
                                  "DataSourceListItemDTO shape", [],
                                  {"type": "array", "items": obj}, {}),
        "/api/datasources/uid/{uid}": _read("A datasource by uid (Grafana's dtos.DataSource)",
                                            [_UID], obj, _FOUND),
        "/api/datasources/name/{name}": _read("A datasource by name", [name], obj, _FOUND),
        "/api/datasources/id/{name}": _read("The id of a datasource by name: {\"id\": n}",
                                            [name], obj, _FOUND),
        "/api/datasources/{id}": _read("A datasource by numeric id", [ident], obj,
                                       {**_BAD_INPUT, **_FOUND}),
        "/api/plugins/errors": _read("Rejected plugins: {pluginId, errorCode, pluginType}", [],
                                     {"type": "array", "items": obj}, {}),
        "/api/plugins/{pluginId}/settings": _read("Grafana's plugin settings (PluginSetting)",
                                                  [_PLUGIN_ID], obj, _FOUND),
        "/api/frontend/settings": {"get": {
            "summary": "Grafana's frontend settings, only buildInfo (version, commit)",
            "security": [], "responses": {
                "200": {"description": "buildInfo", "content": {_JSON: {"schema": obj}}}}}},
        "/api/health": {"get": {
            "summary": "Grafana's health: database is the routing table's readiness",
            "security": [], "responses": {
                "200": {"description": "ready", "content": {_JSON: {"schema": obj}}},
                "503": {"description": "not ready (routing table not synced, or draining)",
                        "content": {_JSON: {"schema": obj}}}}}},
    }


def document(version: str) -> dict[str, Any]:
    query_answer = {_JSON: {"schema": {"$ref": "#/components/schemas/QueryDataResponse"}},
                    "multipart/mixed": {"schema": {"type": "string"},
                                        "description": "With Accept: application/vnd.apache."
                                        "arrow.file: one part per frame, the plugin's Arrow "
                                        "IPC file bytes untouched, and one application/json "
                                        "part per failed query"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "plugin-operator gateway", "version": version,
                 "description": "Grafana's plugin HTTP API in front of plugin backends run by "
                                "plugin-operator. Authenticate with a Kubernetes bearer token; "
                                "access follows Kubernetes RBAC; limits on bodies, queries "
                                "and results are listed in docs/gateway.md."},
        "components": {
            "securitySchemes": {"kubernetesToken": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas()},
        "security": [{"kubernetesToken": []}],
        "paths": {
            "/api/ds/query": {"post": {
                "summary": "Query one or more datasources (Grafana's dtos.MetricRequest)",
                "parameters": [_NAMESPACE],
                "requestBody": {"required": True, "content": {_JSON: {
                    "schema": {"$ref": "#/components/schemas/MetricRequest"}}}},
                "responses": {
                    "200": {"description": "Every query succeeded", "content": query_answer},
                    "400": {"description": "A query failed (its result says why), the body "
                                           "is invalid, or a result is over the series or "
                                           "values limit (the message says what to change)",
                            "content": {_JSON: {"schema": {"anyOf": [
                                {"$ref": "#/components/schemas/Error"},
                                {"$ref": "#/components/schemas/QueryDataResponse"}]}},
                                "multipart/mixed": query_answer["multipart/mixed"]}},
                    **_CALLER, **_FOUND, **_TOO_LARGE, **_BACKEND}}},
            "/api/datasources/uid/{uid}/resources": _any_method(
                "Datasource resource call (root)", [_UID, _NAMESPACE]),
            "/api/datasources/uid/{uid}/resources/{path}": _any_method(
                "Datasource resource call", [_UID, _PATH, _NAMESPACE]),
            "/api/datasources/uid/{uid}/health": _health("CheckHealth of a datasource", _UID),
            "/api/plugins/{pluginId}/resources": _any_method(
                "App plugin resource call (root)", [_PLUGIN_ID, _NAMESPACE]),
            "/api/plugins/{pluginId}/resources/{path}": _any_method(
                "App plugin resource call", [_PLUGIN_ID, _PATH, _NAMESPACE]),
            "/api/plugins/{pluginId}/health": _health("CheckHealth of an app plugin",
                                                      _PLUGIN_ID),
            "/api/plugins": {"get": {
                "summary": "Registered plugins with their plugin.json facts and signature",
                "responses": {"200": {"description": "The plugins the caller may get",
                                      "content": {_JSON: {"schema": {
                                          "type": "array", "items": {"type": "object"}}}}},
                              **_CALLER}}},
            "/public/plugins/{pluginId}/{path}": {"get": {
                "summary": "A verified frontend file of a plugin (module.js, ...), served "
                           "without a token as Grafana serves them",
                "security": [], "parameters": [_PLUGIN_ID, _PATH, _NAMESPACE],
                "responses": {
                    "200": {"description": "The file, with ETag and Cache-Control",
                            "content": {"*/*": {"schema": {}}}},
                    "304": {"description": "Not modified (If-None-Match)"},
                    **_FOUND,
                    "502": _error("The plugin's verified archive cannot be fetched")}}},
            **_registry_paths(),
            "/metrics/plugins/{pluginId}": {"get": {
                "summary": "The plugin's CollectMetrics (Prometheus text)",
                "parameters": [_PLUGIN_ID, _NAMESPACE],
                "responses": {"200": {"description": "Prometheus text",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_CALLER, **_FOUND, **_BACKEND}}},
            "/api/streams/ds/{uid}/{path}": _stream("datasource", _UID),
            "/api/streams/plugin/{pluginId}/{path}": _stream("plugin", _PLUGIN_ID),
            "/api/live/publish": {"post": {
                "summary": "Grafana's publish: {\"channel\": \"ds/<uid>/<path>\", \"data\": {}}",
                "requestBody": {"required": True, "content": {_JSON: {"schema": {
                    "$ref": "#/components/schemas/LivePublish"}}}},
                "responses": {"200": _PUBLISHED, **_BAD_INPUT, **_CALLER, **_FOUND,
                              **_TOO_LARGE, **_BACKEND}}},
            "/metrics": {"get": {"summary": "The gateway's own metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text",
                                                       "content": {"text/plain": {}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": {"description": "alive",
                                                       "content": {_JSON: {}}}}}},
            "/readyz": {"get": {"summary": "Readiness: routing table synced, not draining",
                                "security": [],
                                "responses": {"200": {"description": "ready",
                                                      "content": {_JSON: {}}},
                                              "503": {"description": "not ready",
                                                      "content": {_JSON: {}}}}}},
            "/api/openapi.json": {"get": {"summary": "This document", "security": [],
                                          "responses": {"200": {"description": "OpenAPI",
                                                                "content": {_JSON: {}}}}}},
        },
    }
