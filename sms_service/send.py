"""The POST /send route."""

from __future__ import annotations

from flask import abort, current_app, request

from sms_service.errors import ServiceBlueprint
from sms_service.schemas import ErrorSchema, ReceiptSchema, SendRequestSchema

bp = ServiceBlueprint("send", __name__, url_prefix="", description="Send SMS messages")

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}
ERROR_STATUSES = {
    400: ("Bad Request", "invalid request, or the provider rejected the message", None),
    401: ("Unauthorized", "API_KEYS is set and the bearer key is missing or wrong", None),
    403: ("Forbidden", "destination country or number type not allowed", None),
    413: ("Payload Too Large", "request body over 16 KiB", None),
    415: ("Unsupported Media Type", "Content-Type is not application/json", None),
    429: ("Too Many Requests", "rate limit, receiver delay, or provider throttling", RETRY_AFTER),
    500: ("Internal Server Error", "unexpected error", None),
    502: ("Bad Gateway", "provider failed, refused our credentials, or answered garbage", None),
    503: ("Service Unavailable", "balance empty or unknown, or shared storage unavailable", None),
    504: ("Gateway Timeout", "provider did not answer within PROVIDER_TIMEOUT", None),
}


@bp.before_request
def guard_before_parsing() -> None:
    """Count the request against the global limit, then insist on JSON."""
    services = current_app.extensions["sms_service"]
    services.authorize(request.headers.get("Authorization"))
    services.guards.check_rate_limit()
    if request.mimetype != "application/json":
        abort(415)


def _document_errors(view):
    for status, (_, description, headers) in ERROR_STATUSES.items():
        view = bp.alt_response(status, schema=ErrorSchema, description=description,
                               headers=headers)(view)
    return view


@bp.route("/send", methods=["POST"])
@bp.arguments(SendRequestSchema, location="json", description="the message to send")
@bp.response(200, ReceiptSchema, description="the provider accepted the message")
@_document_errors
def send(payload: dict[str, str]) -> dict[str, str]:
    """Send one SMS through the configured provider."""
    return current_app.extensions["sms_service"].dispatcher.send(**payload)
