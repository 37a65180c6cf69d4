"""The OpenAPI 3.1 document of the gateway's HTTP API (served at /api/openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "Error in Grafana's shape",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AUTH = {"401": {**_ERROR, "description": "No or invalid bearer token"},
         "403": {**_ERROR, "description": "RBAC denies the call"}}
_UID = {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "DataSourceInstance spec.uid"}
_PLUGIN_ID = {"name": "pluginId", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
_NAMESPACE = {"name": "namespace", "in": "query", "required": False,
              "schema": {"type": "string"},
              "description": "Only needed when a uid or pluginId exists in several namespaces"}
_RESOURCE_RESPONSES = {"default": {"description": "Status, headers and body from the plugin, "
                                                  "streamed chunk by chunk"},
                       "404": _ERROR, "503": _ERROR, **_AUTH}


def _any_method(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    operation = {"summary": summary, "parameters": params, "responses": _RESOURCE_RESPONSES}
    return dict.fromkeys(("get", "post", "put", "patch", "delete"), operation)


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "plugin-operator gateway", "version": version,
                 "description": "Grafana's plugin HTTP API in front of plugin backends run by "
                                "plugin-operator. Authenticate with a Kubernetes bearer token; "
                                "access follows Kubernetes RBAC (see docs/gateway.md)."},
        "components": {
            "securitySchemes": {"kubernetesToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["message"], "properties": {
                    "message": {"type": "string"}, "messageId": {"type": "string"},
                    "statusCode": {"type": "integer"}}},
                "MetricRequest": {"type": "object", "required": ["queries"], "properties": {
                    "from": {"type": "string", "examples": ["now-1h", "1700000000000"]},
                    "to": {"type": "string", "examples": ["now"]},
                    "queries": {"type": "array", "items": {
                        "type": "object", "required": ["datasource"],
                        "additionalProperties": True, "properties": {
                            "refId": {"type": "string", "default": "A"},
                            "datasource": {"type": "object", "properties": {
                                "uid": {"type": "string"}, "type": {"type": "string"}}},
                            "maxDataPoints": {"type": "integer", "default": 100},
                            "intervalMs": {"type": "integer", "default": 1000},
                            "queryType": {"type": "string"}}}}}},
                "QueryDataResponse": {"type": "object", "properties": {"results": {
                    "type": "object", "additionalProperties": {"type": "object", "properties": {
                        "status": {"type": "integer"}, "error": {"type": "string"},
                        "errorSource": {"type": "string", "enum": ["plugin", "downstream", ""]},
                        "frames": {"type": "array", "items": {"type": "object",
                                   "description": "Grafana data frame JSON"}}}}}}},
                "Health": {"type": "object", "properties": {
                    "status": {"type": "string", "enum": ["OK", "ERROR", "UNKNOWN"]},
                    "message": {"type": "string"}, "details": {"type": "object"}}},
            }},
        "security": [{"kubernetesToken": []}],
        "paths": {
            "/api/ds/query": {"post": {
                "summary": "Query one or more datasources (Grafana's dtos.MetricRequest)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/MetricRequest"}}}},
                "responses": {
                    "200": {"description": "Every query succeeded", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/QueryDataResponse"}},
                        "multipart/mixed": {"description": "With Accept: application/vnd."
                                            "apache.arrow.file: one part per frame, the "
                                            "plugin's Arrow IPC file bytes untouched, and one "
                                            "application/json part per failed query"}}},
                    "400": {"description": "A query failed (results say which) or the body "
                                           "is invalid"},
                    "404": _ERROR, **_AUTH, "503": _ERROR}}},
            "/api/datasources/uid/{uid}/resources": _any_method(
                "Datasource resource call (root)", [_UID, _NAMESPACE]),
            "/api/datasources/uid/{uid}/resources/{path}": _any_method(
                "Datasource resource call", [_UID, _PATH, _NAMESPACE]),
            "/api/datasources/uid/{uid}/health": {"get": {
                "summary": "CheckHealth of a datasource", "parameters": [_UID, _NAMESPACE],
                "responses": {"200": {"description": "status OK", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                    "400": {"description": "status ERROR or UNKNOWN"}, "404": _ERROR,
                    "503": _ERROR, **_AUTH}}},
            "/api/plugins/{pluginId}/resources": _any_method(
                "App plugin resource call (root)", [_PLUGIN_ID, _NAMESPACE]),
            "/api/plugins/{pluginId}/resources/{path}": _any_method(
                "App plugin resource call", [_PLUGIN_ID, _PATH, _NAMESPACE]),
            "/api/plugins/{pluginId}/health": {"get": {
                "summary": "CheckHealth of an app plugin", "parameters": [_PLUGIN_ID],
                "responses": {"200": {"description": "status OK"},
                              "400": {"description": "status not OK"}, **_AUTH}}},
            "/api/plugins": {"get": {
                "summary": "Registered plugins with their plugin.json facts and signature",
                "responses": {"200": {"description": "List of plugins"}, **_AUTH}}},
            "/public/plugins/{pluginId}/{path}": {"get": {
                "summary": "A verified frontend file of a plugin (module.js, ...)",
                "parameters": [_PLUGIN_ID, _PATH],
                "responses": {"200": {"description": "The file, with ETag and Cache-Control"},
                              "304": {"description": "Not modified"}, "404": _ERROR,
                              **_AUTH}}},
            "/metrics/plugins/{pluginId}": {"get": {
                "summary": "The plugin's CollectMetrics (Prometheus text)",
                "parameters": [_PLUGIN_ID],
                "responses": {"200": {"description": "text/plain metrics"}, "404": _ERROR,
                              **_AUTH}}},
            "/api/streams/ds/{uid}/{path}": {
                "get": {"summary": "Subscribe to a datasource stream as Server-Sent Events "
                                   "(SubscribeStream, then the channel's shared RunStream)",
                        "parameters": [_UID, _PATH, {"name": "data", "in": "query",
                                                     "schema": {"type": "string"},
                                                     "description": "subscribe JSON"}],
                        "responses": {"200": {"description": "text/event-stream"},
                                      "404": _ERROR, **_AUTH}},
                "post": {"summary": "PublishStream into a datasource channel",
                         "parameters": [_UID, _PATH],
                         "responses": {"200": {"description": "published"}, "404": _ERROR,
                                       **_AUTH}}},
            "/api/streams/plugin/{pluginId}/{path}": {
                "get": {"summary": "Subscribe to a plugin stream as Server-Sent Events",
                        "parameters": [_PLUGIN_ID, _PATH],
                        "responses": {"200": {"description": "text/event-stream"}, **_AUTH}},
                "post": {"summary": "PublishStream into a plugin channel",
                         "parameters": [_PLUGIN_ID, _PATH],
                         "responses": {"200": {"description": "published"}, **_AUTH}}},
            "/api/live/publish": {"post": {
                "summary": "Grafana's publish: {\"channel\": \"ds/<uid>/<path>\", \"data\": {}}",
                "responses": {"200": {"description": "published"}, **_AUTH}}},
            "/metrics": {"get": {"summary": "The gateway's own metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text"}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: routing table synced, not draining",
                                "security": [],
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not ready"}}}},
            "/api/openapi.json": {"get": {"summary": "This document", "security": [],
                                          "responses": {"200": {"description": "OpenAPI"}}}},
        },
    }
