"""POST /callbacks/{provider}/inbound and the admin routes /suppressions/{number}."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, request
from flask_smorest import abort as smorest_abort
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from sms_service import phone
from sms_service.errors import ServiceBlueprint
from sms_service.schemas import ErrorSchema
from sms_service.status.routes import QUERY_REPORT, callback_errors, read_callback
from sms_service.suppression.schemas import SuppressionSchema
from sms_service.suppression.service import ADMIN

log = logging.getLogger(__name__)

bp = ServiceBlueprint("suppression", __name__, url_prefix="",
                      description="Opt-out (STOP) suppression: inbound replies and the admin API")

_INBOUND_BODY = {
    "description": "a message a person sent to the service's number, as the provider posts it (Twilio: "
                   "form fields, signed with X-Twilio-Signature; console: JSON {from, body}, with the URL's "
                   "token)",
    "required": True,
    "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}}},
}
_INBOUND_UNKNOWN = "no inbound messages for this provider"
_NUMBER = {"name": "number", "in": "path", "required": True,
           "description": "the number in E.164 (`+` may be written %2B)",
           "schema": {"type": "string", "pattern": "^\\+[1-9][0-9]{1,14}$", "example": "+15558675310"}}
_ADMIN_ERRORS = {
    400: "the number is not E.164",
    401: "the admin bearer key is missing or wrong",
    404: "not on the list (GET, DELETE), or ADMIN_API_KEYS is unset (every method)",
    503: "shared storage unavailable",
}


def inbound_path(provider_name: str) -> str:
    """The route's path for a provider's inbound messages."""
    return f"/callbacks/{quote(provider_name, safe='')}/inbound"


@bp.route("/callbacks/<provider>/inbound", methods=["POST"])
@bp.doc(requestBody=_INBOUND_BODY, security=[], responses={
    "200": {"description": "taken: STOP words add the sender to the suppression list, START words remove "
                           "it, anything else changes nothing. Twilio gets an empty TwiML <Response/> "
                           "(text/xml), other providers an empty body"},
})
@callback_errors(bp, unknown=_INBOUND_UNKNOWN, changed="changed", body=True)
def inbound(provider: str) -> Response:
    """Receive a reply a person sent (STOP, START...) and apply it to the suppression list."""
    return _take_inbound(provider)


@bp.route("/callbacks/<provider>/inbound", methods=["GET"])
@bp.doc(parameters=[QUERY_REPORT], security=[], responses={
    "200": {"description": "taken, as for POST"},
})
@callback_errors(bp, unknown=_INBOUND_UNKNOWN, changed="changed", body=False)
def inbound_query(provider: str) -> Response:
    """Receive a reply given in the query string (Vonage's GET inbound messages)."""
    return _take_inbound(provider)


def _take_inbound(provider: str) -> Response:
    services = current_app.extensions["sms_service"]
    settings = services.settings
    # Every configured provider (failover) takes its own inbound messages.
    route = services.route(provider)
    enabled = route is not None and settings.public_base_url and route.provider.supports_inbound()
    if not enabled:
        smorest_abort(404, message=f"no inbound messages for provider {provider[:40]!r}")
    url = settings.public_base_url + inbound_path(provider)
    messages = read_callback(route, url, route.provider.parse_inbound, "inbound message")
    for message in messages or ():
        try:
            services.suppression.apply_inbound(message)
        except ValueError as exc:
            log.warning("inbound message dropped", extra={"provider": provider, "reason": str(exc)[:200]})
    mimetype, answer = route.provider.inbound_answer
    return Response(answer, status=200, mimetype=mimetype)


ADMIN_KEY_REQUIRED = ("an admin key is required: send Authorization: Bearer <one of ADMIN_API_KEYS> "
                      "(the keys of API_KEYS do not open the admin routes)")


def require_admin() -> None:
    """Let an admin route through only with ADMIN_API_KEYS set and one of them as the bearer key.

    Aborts with 404 when the keys are unset (the admin routes then do not exist: before
    any 400 or 401), and raises `Unauthorized` for a missing or wrong key.
    """
    services = current_app.extensions["sms_service"]
    keys = services.settings.admin_api_keys
    if not keys:
        abort(404)
    scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:  # every key, always: timing tells nothing about which matched
        matched |= hmac.compare_digest(given_bytes, key.encode())
    if scheme.lower() != "bearer" or not matched:
        refusal = Unauthorized(www_authenticate=WWWAuthenticate("bearer", {"realm": "sms-service-admin"}))
        refusal.data = {"message": ADMIN_KEY_REQUIRED}
        raise refusal


def _number(number: str) -> str:
    require_admin()  # 404 before 400 or 401: without ADMIN_API_KEYS the routes do not exist
    if not phone.is_e164(number) or not phone.is_possible(number):
        smorest_abort(400, message="number: not an E.164 phone number")
    return number


def _documented(view):
    view = bp.doc(parameters=[_NUMBER], security=[{"adminKey": []}])(view)
    for status, description in _ADMIN_ERRORS.items():
        view = bp.alt_response(status, schema=ErrorSchema, description=description)(view)
    return view


@bp.route("/suppressions/<path:number>", methods=["PUT"])
@bp.response(200, SuppressionSchema, description="on the list (an existing entry keeps its source and time)")
@bp.alt_response(409, schema=ErrorSchema, description="taken off the list again by another request meanwhile")
@_documented
def put_suppression(number: str) -> Response:
    """Put a number on the suppression list (source admin); needs no body."""
    services = current_app.extensions["sms_service"]
    number = _number(number)
    services.suppression.add(number, ADMIN)
    entry = services.suppression.entry(number)
    if entry is None:  # removed again in between: the PUT still happened
        smorest_abort(409, message="the number was removed again while it was being added")
    return jsonify(entry)


@bp.route("/suppressions/<path:number>", methods=["GET"])
@bp.response(200, SuppressionSchema, description="the number is on the list")
@_documented
def get_suppression(number: str) -> Response:
    """Tell whether a number is on the suppression list, since when and why."""
    services = current_app.extensions["sms_service"]
    entry = services.suppression.entry(_number(number))
    if entry is None:
        smorest_abort(404, message="the number is not on the suppression list")
    return jsonify(entry)


@bp.route("/suppressions/<path:number>", methods=["DELETE"])
@bp.response(204, description="taken off the list")
@_documented
def delete_suppression(number: str) -> Response:
    """Take a number off the suppression list (its owner may receive messages again)."""
    services = current_app.extensions["sms_service"]
    if not services.suppression.remove(_number(number), ADMIN):
        smorest_abort(404, message="the number is not on the suppression list")
    return Response(status=204)
