"""POST /callbacks/{provider}/status, GET /messages and GET /messages/{sid}."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl

from flask import Response, current_app, jsonify, request
from flask_smorest import abort

from sms_service.errors import ServiceBlueprint
from sms_service.exceptions import CallbackRefused
from sms_service.provider import CallbackRequest
from sms_service.request_json import read_body
from sms_service.schemas import ErrorSchema
from sms_service.status.schemas import MessageListQuerySchema, MessageListSchema, MessageSchema

if TYPE_CHECKING:  # failover builds the routes from this package's StatusService
    from sms_service.failover import Route

log = logging.getLogger(__name__)
T = TypeVar("T")

bp = ServiceBlueprint("status", __name__, url_prefix="", description="Delivery status of sent messages")

_CALLBACK_BODY = {
    "description": "the provider's status report, as the provider sends it (Twilio: form fields, "
                   "signed with X-Twilio-Signature; Kaleyra and console: JSON, with the URL's token)",
    "required": True,
    "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}}},
}


#: The report of a provider that calls back with GET (Vonage can): its fields in the query.
QUERY_REPORT = {
    "name": "report", "in": "query", "required": False, "style": "form", "explode": True,
    "description": "the provider's report as query fields (Vonage: messageId, status, err-code, ..., "
                   "signed with sig, or with the URL's token)",
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
}


def callback_errors(blueprint: ServiceBlueprint, *, unknown: str, changed: str,
                    body: bool) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Document the error answers every provider callback route shares (413 only with a body)."""
    errors = [(400, "authentic but unreadable"),
              (403, f"bad or missing signature or token; nothing {changed}"),
              (404, unknown), (413, "body over 16 KiB"),
              (503, "shared storage unavailable; the provider may retry")]

    def document(view: Callable[..., Response]) -> Callable[..., Response]:
        for status, description in reversed(errors):
            if status != 413 or body:
                view = blueprint.alt_response(status, schema=ErrorSchema, description=description)(view)
        return view

    return document


_STATUS_TAKEN = {"200": {"description": "taken (an unknown or expired message is kept as an orphan); "
                                        "empty body"}}
_STATUS_UNKNOWN = "no status callbacks for this provider"


@bp.route("/callbacks/<provider>/status", methods=["POST"])
@bp.doc(requestBody=_CALLBACK_BODY, security=[], responses=_STATUS_TAKEN)
@callback_errors(bp, unknown=_STATUS_UNKNOWN, changed="stored", body=True)
def status_callback(provider: str) -> Response:
    """Receive a provider's delivery report for one message."""
    return _take_status(provider)


@bp.route("/callbacks/<provider>/status", methods=["GET"])
@bp.doc(parameters=[QUERY_REPORT], security=[], responses=_STATUS_TAKEN)
@callback_errors(bp, unknown=_STATUS_UNKNOWN, changed="stored", body=False)
def status_callback_query(provider: str) -> Response:
    """Receive a provider's delivery report given in the query string (Vonage's GET receipts)."""
    return _take_status(provider)


def _take_status(provider: str) -> Response:
    services = current_app.extensions["sms_service"]
    # Any configured provider may have sent the message (failover): each has its route.
    route = services.route(provider)
    status = route.status if route is not None else None
    if status is None or not status.enabled:
        abort(404, message=f"no status callbacks for provider {provider[:40]!r}")
    updates = read_callback(route, status.public_url, route.provider.parse_status_callback, "status callback")
    for update in updates or ():
        try:
            status.apply(update)
        except ValueError as exc:
            log.warning("status update dropped", extra={"provider": provider, "reason": str(exc)[:200]})
            continue
        if update.opted_out is True:  # Kaleyra's OPT-OUT trace: the receiver opted out (SPEC section 12)
            services.suppression.learn(update.receiver, update.error_code or update.provider_status)
    # Twilio expects an empty 200.
    return Response(b"", status=200, mimetype="text/plain")


def read_callback(route: Route, public_url: str, parse: Callable[[CallbackRequest], T], what: str) -> T:
    """Authenticate a provider's callback to `public_url` and `parse` it, or answer 403 / 400.

    The token (for providers that cannot sign) is checked before the body is read; the
    plugin's `parse` checks a signature. `what` names the callback in the WARNING lines.
    """
    try:
        route.status.check_token(request.args)
        return parse(callback_request(public_url, read_body(request)))
    except CallbackRefused as exc:
        log.warning(f"{what} refused", extra={"provider": route.name, "reason": exc.message})
        abort(403, message="the callback is not authentic")
    except ValueError as exc:
        log.warning(f"{what} unreadable", extra={"provider": route.name, "reason": str(exc)[:200]})
        abort(400, message="the callback could not be read")


def callback_request(public_url: str, body: bytes) -> CallbackRequest:
    query = request.query_string.decode("latin-1")
    form: dict[str, tuple[str, ...]] = {}
    data = None
    if request.mimetype == "application/x-www-form-urlencoded":
        pairs: dict[str, list[str]] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            pairs.setdefault(name, []).append(value)
        form = {name: tuple(values) for name, values in pairs.items()}
    elif request.mimetype == "application/json" or request.mimetype.endswith("+json"):
        try:
            data = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            raise ValueError("the JSON body is not valid") from None
    return CallbackRequest(
        url=f"{public_url}?{query}" if query else public_url,
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body, form=form, json=data,
    )


@bp.route("/messages/<sid>", methods=["GET"])
@bp.response(200, MessageSchema, description="the message's record")
@bp.alt_response(401, schema=ErrorSchema, description="API_KEYS is set and the key is missing or wrong")
@bp.alt_response(404, schema=ErrorSchema, description="no such message (or expired, or another caller's)")
@bp.alt_response(503, schema=ErrorSchema, description="shared storage unavailable")
def get_message(sid: str) -> Response:
    """Read the delivery status of a message this caller sent."""
    services = current_app.extensions["sms_service"]
    caller = services.authorize(request.headers.get("Authorization"))
    # Each provider's records are its own: the one that sent the message has it.
    record = None
    for route in services.failover.routes:
        if route.status is not None and (record := route.status.read(sid, caller)) is not None:
            break
    if record is None:
        abort(404, message="no such message")
    return jsonify(record)


@bp.route("/messages", methods=["GET"])
@bp.arguments(MessageListQuerySchema, location="query", as_kwargs=True)
@bp.response(200, MessageListSchema, description="a page of the caller's messages, newest first")
@bp.alt_response(400, schema=ErrorSchema, description="a filter is not valid (the message names it)")
@bp.alt_response(401, schema=ErrorSchema, description="API_KEYS is set and the key is missing or wrong")
@bp.alt_response(503, schema=ErrorSchema, description="shared storage unavailable")
def list_messages(since=None, until=None, **filters) -> Response:
    """List the messages this caller sent (every message when API_KEYS is off), newest first."""
    services = current_app.extensions["sms_service"]
    caller = services.authorize(request.headers.get("Authorization"))
    if since is not None:
        filters["since_ms"] = since.timestamp() * 1000
    if until is not None:
        filters["until_ms"] = until.timestamp() * 1000
    # Every provider's records are in the one storage: any route's service lists them all.
    messages, following = services.status.list(caller, **filters)
    return jsonify({"messages": messages, "next": following})
