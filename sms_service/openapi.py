"""The OpenAPI document's shared parts: security schemes, headers of every answer, the probes, servers."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask import Flask
from flask_smorest import Api

from sms_service.logs import REQUEST_ID_HEADER

API_KEY_SCHEME = "apiKey"
ADMIN_KEY_SCHEME = "adminKey"
SECURITY_SCHEMES = {
    API_KEY_SCHEME: {"type": "http", "scheme": "bearer",
                     "description": "one of API_KEYS; asked for only when API_KEYS is set"},
    ADMIN_KEY_SCHEME: {"type": "http", "scheme": "bearer",
                       "description": "one of ADMIN_API_KEYS (the admin routes exist only when it is set)"},
}
# The routes a caller's API key opens (when API_KEYS is set); callbacks authenticate by
# signature or token, probes and the document need nothing.
API_KEY_ROUTES = ("/send", "/estimate", "/messages/{sid}")

_REQUEST_ID = {
    "description": "the request's id: the caller's own when it is 1 to 128 of A-Z a-z 0-9 . _ : @ / + = -, "
                   "else a new one; every log line of the request carries it",
    "schema": {"type": "string"},
}
HEADERS = {
    REQUEST_ID_HEADER: _REQUEST_ID,
    "Idempotent-Replayed": {
        "description": "true when this is the stored answer of an earlier request with the same "
                       "Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {"description": "seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 1}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


class HeadersPlugin(BasePlugin):
    """Give every operation the X-Request-Id header, asked and answered, and its security.

    The document describes this deployment: the API key is required on its routes only
    when API_KEYS is set (`api_keys`).
    """

    def __init__(self, api_keys: bool) -> None:
        super().__init__()
        self.api_keys = api_keys

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **_: Any) -> None:
        for operation in (operations or {}).values():
            parameters = operation.setdefault("parameters", [])
            if not any(isinstance(p, dict) and p.get("name") == REQUEST_ID_HEADER for p in parameters):
                parameters.append({"name": REQUEST_ID_HEADER, "in": "header", "required": False,
                                   **_REQUEST_ID})
            for status, response in operation.get("responses", {}).items():
                if not isinstance(response, dict):  # a reference to a shared response
                    continue
                headers = response.setdefault("headers", {})
                headers[REQUEST_ID_HEADER] = _ref(REQUEST_ID_HEADER)
                if "Retry-After" in headers:
                    headers["Retry-After"] = _ref("Retry-After")
                if path == "/send" and str(status) == "200":
                    headers["Idempotent-Replayed"] = _ref("Idempotent-Replayed")
            if self.api_keys and path in API_KEY_ROUTES and "security" not in operation:
                operation["security"] = [{API_KEY_SCHEME: []}]


def spec_options(public_base_url: str | None) -> dict[str, Any]:
    """API_SPEC_OPTIONS: where the service answers (PUBLIC_BASE_URL, else the host the document came from)."""
    url = public_base_url or "/"
    return {"servers": [{"url": url, "description": "this sms-service"}]}


_PROBE_BODY = {"application/json": {"schema": {"type": "object", "properties": {
    "name": {"type": "string"}, "version": {"type": "string"},
    "status": {"type": "string", "enum": ["OK", "KO"]},
    "checks": {"type": "object", "additionalProperties": {"type": "string", "enum": ["OK", "KO"]}},
}}}}


def _probe(summary: str, description: str, unhealthy: str | None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "healthy", "content": _PROBE_BODY,
                                         "headers": {REQUEST_ID_HEADER: _ref(REQUEST_ID_HEADER)}}}
    if unhealthy:
        responses["503"] = {"description": unhealthy, "content": _PROBE_BODY,
                            "headers": {REQUEST_ID_HEADER: _ref(REQUEST_ID_HEADER)}}
    return {"get": {"tags": ["operations"], "summary": summary, "description": description,
                    "security": [], "responses": responses}}


def document(api: Api, app: Flask) -> None:
    """Add the security schemes, the shared headers, and the probes and metrics (a plain blueprint)."""
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    for name, header in HEADERS.items():
        api.spec.components.header(name, header)
    api.spec.tag({"name": "operations", "description": "Probes and metrics (Mia-Platform conventions)"})
    api.spec.path(rule=rules["/-/healthz"], operations=_probe(
        "Liveness", "The process answers.", None))
    api.spec.path(rule=rules["/-/ready"], operations=_probe(
        "Readiness", "Provider loaded, storage reachable, not shutting down.",
        "not ready: the storage does not answer, or the process is stopping"))
    api.spec.path(rule=rules["/-/check-up"], operations=_probe(
        "Dependencies", "The storage, and each provider's circuit and, when checked, balance.",
        "a dependency is down"))
    api.spec.path(rule=rules["/-/metrics"], operations={"get": {
        "tags": ["operations"], "summary": "Prometheus metrics",
        "description": "Every worker's metrics, summed: the Prometheus text exposition format.",
        "security": [],
        "responses": {"200": {"description": "the metrics",
                              "content": {"text/plain": {"schema": {"type": "string"}}},
                              "headers": {REQUEST_ID_HEADER: _ref(REQUEST_ID_HEADER)}}},
    }})
