"""Exception-to-HTTP mapping: every error of every route becomes {statusCode, error, message}."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import webargs.core
from flask import Flask, Response, current_app, g, jsonify, request
from flask_smorest import Api, Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from sms_service import metrics, request_json
from sms_service.exceptions import (
    BalanceExhausted,
    BalanceUnavailable,
    CallbackRefused,
    ConfigError,
    DestinationRefused,
    GuardRejection,
    IdempotencyConflict,
    IdempotencyKeyInvalid,
    IdempotencyMismatch,
    MessageOverBudget,
    MessageRejected,
    PersonalisationInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    RateLimitExceeded,
    ReceiverSuppressed,
    ReceiverTooSoon,
    SegmentBudgetExceeded,
    SmsServiceError,
    StorageUnavailable,
    TemplateNotFound,
)
from sms_service.logs import SEND_LOG_FIELDS
from sms_service.schemas import ErrorSchema

log = logging.getLogger(__name__)

# app.extensions key: path prefixes whose refusals are pages, not the API's JSON (the
# operator console), each with the function that renders one: (status, message) -> Response.
HTML_ERRORS = "sms_service.html_errors"

# Most specific first: the first class an exception is an instance of decides.
STATUS_BY_EXCEPTION: tuple[tuple[type[SmsServiceError], int], ...] = (
    (RateLimitExceeded, 429),
    (ReceiverTooSoon, 429),
    (DestinationRefused, 403),
    (ReceiverSuppressed, 403),
    (SegmentBudgetExceeded, 429),
    (MessageOverBudget, 403),
    (BalanceExhausted, 503),
    (BalanceUnavailable, 503),
    (StorageUnavailable, 503),
    (MessageRejected, 400),
    (ProviderRateLimited, 429),
    (ProviderAuthError, 502),
    (ProviderTimeout, 504),
    (ProviderUnreachable, 502),
    (ProviderUnavailable, 502),
    (ProviderError, 502),
    (IdempotencyKeyInvalid, 400),
    (IdempotencyConflict, 409),
    (IdempotencyMismatch, 422),
    (CallbackRefused, 403),
    (ConfigError, 500),
    (TemplateNotFound, 404),
    (PersonalisationInvalid, 400),
)

# Outcome words of /send answers that are not service exceptions.
_HTTP_REASONS = {400: "validation", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 408: "request_timeout", 413: "too_large", 415: "unsupported_media_type", 500: "internal"}

_MESSAGES = {
    401: "a valid API key is required: send Authorization: Bearer <key>",
    404: "no such route",
    413: "request body is larger than 16 KiB",
    415: "Content-Type must be application/json",
    500: "internal error; the service log has the details under this request id",
}


def status_for(exc: SmsServiceError) -> int:
    """HTTP status of a service exception (500 for an unmapped one)."""
    for cls, status in STATUS_BY_EXCEPTION:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, message: str | None) -> dict[str, str]:
    """The error JSON of a status; a missing message gets the generic one of the status."""
    text = message or _MESSAGES.get(status) or HTTPStatus(status).phrase.lower()
    return {"statusCode": str(status), "error": HTTPStatus(status).phrase, "message": text}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Build the error JSON answer."""
    response = jsonify(error_body(status, message))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ArgumentsParser(FlaskParser):
    """webargs parser answering 400 (not 422) and refusing pathological JSON cleanly."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Any) -> Any:
        # Read within the size limit and decoded strictly (request_json), instead of
        # Flask's get_data and json.loads, which take a chunked body of any size, keep
        # the last of two equal keys, and raise a 500 on a 5,000-digit integer.
        if not webargs.core.is_json(req.mimetype):
            return webargs.core.missing
        return request_json.decode(request_json.read_body(req))


class ServiceBlueprint(Blueprint):
    """flask-smorest blueprint using the service's parser."""

    ARGUMENTS_PARSER = ArgumentsParser()


class ServiceApi(Api):
    """flask-smorest Api whose error handler speaks the service's error JSON."""

    ERROR_SCHEMA = ErrorSchema

    def _register_pagination_header(self) -> None:
        """Nothing: no route pages, and the header would leave an unused PaginationMetadata schema."""

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(SmsServiceError, handle_service_error)

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Answer any HTTP exception, including the 500 of an unhandled one."""
        status = error.code or 500
        headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "www-authenticate")}
        data = getattr(error, "data", None) or {}
        headers.update(data.get("headers") or {})
        g.outcome = _HTTP_REASONS.get(status, "http_error")
        html = _html_renderer()
        if html is not None:
            if status >= 500:
                log.error("console error", extra={"status": status})
            page = html(status, _page_message(status, error))
            for name, value in headers.items():
                page.headers[name] = value
            return page
        return error_response(status, _message(status, error, data), headers)


def handle_service_error(exc: SmsServiceError) -> Response:
    """Answer a service exception with its mapped status and, for 429, Retry-After."""
    status = status_for(exc)
    g.outcome = exc.reason
    # Sends refused before a provider call: a storage failure of a callback or of
    # GET /messages refuses no send, nor does an estimate's answer.
    if request.path == "/send" and isinstance(exc, GuardRejection | StorageUnavailable):
        metrics.GUARD_REJECTIONS.labels(getattr(exc, "guard", "storage")).inc()
    if isinstance(exc, ProviderError):
        # An estimate's answer is no failed send: it called no provider's send.
        if request.path == "/estimate":
            pass
        else:
            if exc.provider:  # the access line of a failed send names who failed, as a sent one does
                request.environ[SEND_LOG_FIELDS] = {"provider": exc.provider}
            if isinstance(exc, ProviderAuthError):
                log.error("provider refused our credentials", extra=_provider_fields(exc))
            else:
                log.warning("provider did not accept the message", extra=_provider_fields(exc))
    elif status >= 500:
        log.error(exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    message = _MESSAGES[500] if isinstance(exc, ConfigError) else exc.message
    html = _html_renderer()
    if html is not None:
        page = html(status, message)
        page.headers.update(headers)
        return page
    return error_response(status, message, headers)


def render_html_under(app: Flask, prefix: str, render: Callable[[int, str], Response]) -> None:
    """Have refusals of paths under `prefix` rendered as pages by `render(status, message)`."""
    app.extensions.setdefault(HTML_ERRORS, {})[prefix] = render


def _html_renderer() -> Callable[[int, str], Response] | None:
    path = request.path
    for prefix, render in current_app.extensions.get(HTML_ERRORS, {}).items():
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return None


def _page_message(status: int, error: HTTPException) -> str:
    # A page's message is Werkzeug's description when the view gave one, never a trace.
    if status >= 500:
        return _MESSAGES[500]
    if status == 404:
        return error.description if error.description and "requested URL" not in error.description \
            else "no such page"
    if status == 405:
        return f"method {request.method} is not allowed here"
    return error.description or HTTPStatus(status).phrase.lower()


def _provider_fields(exc: ProviderError) -> dict[str, Any]:
    return {
        "provider": exc.provider,
        "error_class": type(exc).__name__, "provider_code": exc.provider_code,
        "provider_status": exc.http_status, "provider_request_id": exc.request_id,
    }


def _message(status: int, error: HTTPException, data: Mapping[str, Any]) -> str:
    if "messages" in data:
        return _flatten(data["messages"]) or "invalid request"
    if isinstance(data.get("message"), str):
        return data["message"]
    if status == 405:
        return f"method {request.method} is not allowed on this route"
    return _MESSAGES.get(status) or HTTPStatus(status).phrase.lower()


def validation_message(messages: Any) -> str:
    """A marshmallow error's messages as the one line the API answers with."""
    return _flatten(messages) or "invalid request"


def _flatten(messages: Any, path: str = "") -> str:
    # webargs nests messages by location then field: {"json": {"receiver": ["..."]}}.
    if isinstance(messages, Mapping):
        parts = []
        for key, value in messages.items():
            if path == "" and key in ("json", "headers", "query", "form"):
                sub = _flatten(value, "")
            elif key == "_schema":
                sub = _flatten(value, path)
            else:
                # Unknown keys come from the caller: keep the message one short line.
                name = str(key) if len(str(key)) <= 40 else str(key)[:40] + "..."
                sub = _flatten(value, f"{path}.{name}" if path else name)
            if sub:
                parts.append(sub)
        return "; ".join(parts)
    if isinstance(messages, list | tuple):
        texts = [m for m in messages if isinstance(m, str)]
        nested = [_flatten(m, path) for m in messages if not isinstance(m, str)]
        text = " ".join(texts)
        if text == "Unknown field.":
            text = "unknown field"
        elif text == "Invalid input type.":
            text = "the request body must be a JSON object"
        elif text == "Invalid JSON body.":
            text = "the request body is not valid JSON"
        elif text == "Missing data for required field.":
            text = "is required"
        joined = "; ".join(filter(None, [text, *nested]))
        return f"{path}: {joined}" if path and joined else joined
    return str(messages)


def init_app(app: Flask, api_keys: bool = False) -> ServiceApi:
    """Attach the Api (OpenAPI document, error handlers) to `app`; `api_keys`: API_KEYS is set."""
    from sms_service import openapi

    return ServiceApi(app, spec_kwargs={"extra_plugins": [openapi.HeadersPlugin(api_keys)]})
