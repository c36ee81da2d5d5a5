"""The POST /send route."""

from __future__ import annotations

import json
import logging

import flask_smorest
from flask import Response, abort, current_app, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from sms_service.errors import ServiceBlueprint, error_body, status_for
from sms_service.exceptions import SmsServiceError, StorageUnavailable, proves_nothing_sent
from sms_service.idempotency import KEY_PATTERN, Idempotency, StoredAnswer
from sms_service.logs import SEND_LOG_FIELDS
from sms_service.schemas import ErrorSchema, ReceiptSchema, SendRequestSchema, load_send_request
from sms_service.templates.service import Rendered

log = logging.getLogger(__name__)

bp = ServiceBlueprint("send", __name__, url_prefix="", description="Send SMS messages")

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}
ERROR_STATUSES = {
    400: ("invalid request, or the provider rejected the message", None),
    401: ("API_KEYS is set and the bearer key is missing or wrong", None),
    403: ("destination country or number type not allowed, receiver opted out, or more segments "
          "than the country's whole SEGMENT_BUDGETS budget", None),
    404: ("the template (or the version asked for) is unknown or archived", None),
    409: ("a request with the same Idempotency-Key is still in progress", RETRY_AFTER),
    413: ("request body over 16 KiB", None),
    415: ("Content-Type is not application/json", None),
    422: ("Idempotency-Key reused with a different request", None),
    429: ("rate limit, receiver delay, the country's segment budget, or provider throttling", RETRY_AFTER),
    500: ("unexpected error", None),
    502: ("provider failed, refused our credentials, or answered garbage", None),
    503: ("balance empty or unknown, or shared storage unavailable", None),
    504: ("provider did not answer within PROVIDER_TIMEOUT, or an earlier request with this "
          "Idempotency-Key never finished (outcome unknown)", None),
}


@bp.before_request
def guard_send_before_parsing() -> Response | None:
    """As `guard_before_parsing`, with a known Idempotency-Key answer replayed before any guard."""
    return guard_before_parsing(idempotent=True)


def guard_before_parsing(idempotent: bool = False) -> Response | None:
    """Check the API key, count the request against the global limit, insist on JSON.

    With `idempotent` (/send; /estimate reserves nothing), an Idempotency-Key is looked up
    first: a stored answer is replayed at once. Raises the refusal of each step.
    """
    services = current_app.extensions["sms_service"]
    g.caller = services.authorize(request.headers.get("Authorization"))
    replay = _reserve_key(services) if idempotent else None
    if replay is not None:
        return replay
    try:
        services.guards.check_rate_limit()
    except SmsServiceError:
        if g.get("reservation") is not None:
            # Refused before anything could be sent: the key is free for the retry.
            _settle(lambda: services.idempotency.release(g.reservation))
        raise
    if request.mimetype != "application/json":
        abort(415)
    return None


def _reserve_key(services) -> Response | None:
    """Before every guard: replay the stored answer of this Idempotency-Key, or reserve it.

    A replay costs nothing (no rate-limit slot). A key still pending answers 409 (raised),
    one used with another request 422. A request whose key or body is not readable takes
    the ordinary way (rate limit, then 400), so the SPEC's order holds for everything
    that is not a replay.
    """
    header = request.headers.get("Idempotency-Key")
    if header is None or request.mimetype != "application/json" or KEY_PATTERN.fullmatch(header) is None:
        return None
    try:
        payload = _payload()
    except HTTPException:
        return None
    known = services.idempotency.begin(header, g.get("caller") or "", payload)
    if isinstance(known, StoredAnswer):
        g.outcome = "idempotent_replay"
        return _replay(known)
    g.payload, g.reservation = payload, known
    return None


def _documented(*decorators):
    """Give the view the OpenAPI documentation of flask-smorest `decorators`, not their wrappers.

    The wrappers would parse and validate through webargs and marshmallow on every request
    (and alt_response would wrap the view ten times over): the view validates with
    `schemas.load_send_request` instead, which the tests hold to the schema's answers.
    """
    def apply(view):
        def stand_in():  # pragma: no cover  (never called: it only carries documentation)
            raise NotImplementedError

        documented = stand_in
        for decorate in reversed(decorators):
            documented = decorate(documented)
        view._apidoc = documented._apidoc
        return view

    return apply


IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "1 to 255 printable ASCII characters; a retry with the same key and body "
                   "replays the first answer and sends nothing (kept IDEMPOTENCY_TTL seconds)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}


@bp.route("/send", methods=["POST"])
@_documented(
    bp.arguments(SendRequestSchema(), location="json", description="the message to send"),
    bp.response(200, ReceiptSchema, description="the provider accepted the message"),
    bp.doc(parameters=[IDEMPOTENCY_HEADER]),
    *(bp.alt_response(status, schema=ErrorSchema, description=description, headers=headers)
      for status, (description, headers) in ERROR_STATUSES.items()),
)
def send() -> Response:
    """Send one SMS through the configured provider."""
    services = current_app.extensions["sms_service"]
    known = g.get("reservation")  # reserved before the guards (guard_before_parsing)
    if known is None:
        payload = _payload()
        header = request.headers.get("Idempotency-Key")
        if header is None:
            return _sent(*_dispatch(services, payload))
        Idempotency.check_key(header)  # raises: a readable key was reserved before the guards
        raise RuntimeError("an Idempotency-Key was neither refused nor reserved")
    payload = g.payload
    try:
        receipt, log_fields = _dispatch(services, payload)
    except SmsServiceError as exc:
        if proves_nothing_sent(exc):
            # Nothing can have gone out: the key is freed for a retry. Any other failure
            # may hide a sent SMS, so its answer is kept and replayed instead.
            _settle(lambda: services.idempotency.release(known))
            raise
        answer = StoredAnswer(status_for(exc), error_body(status_for(exc), exc.message), exc.retry_after)
        _settle(lambda: services.idempotency.complete(known, answer))
        raise
    except Exception:
        _settle(lambda: services.idempotency.complete(known, StoredAnswer(500, error_body(500, None))))
        raise
    _settle(lambda: services.idempotency.complete(known, StoredAnswer(200, receipt)))
    return _sent(receipt, log_fields)


def _dispatch(services, payload: dict) -> tuple[dict[str, str], dict]:
    owner = g.get("caller") or ""
    if "body" in payload:  # the hot path: no template, no storage read for one
        return services.dispatcher.send(**payload, owner=owner)
    rendered = render(services, payload)
    return services.dispatcher.send(payload["sender"], payload["receiver"], rendered.body, owner=owner,
                                    template=rendered)


def render(services, payload: dict) -> Rendered:
    """The template a validated request names, rendered with its personalisation.

    Raises `TemplateNotFound`, `PersonalisationInvalid` or `StorageUnavailable`.
    """
    return services.templates.render(payload["template"], payload.get("personalisation") or {},
                                     payload.get("templateVersion"))


def _payload() -> dict:
    # What @bp.arguments would do, without webargs and marshmallow on the hot path: the
    # same parser reads the body, and the same messages come back (schemas.py).
    data = bp.ARGUMENTS_PARSER.load_json(request, SendRequestSchema)  # aborts on a body that is not JSON
    try:
        return load_send_request(data)
    except ValidationError as exc:
        flask_smorest.abort(400, messages={"json": exc.messages})


def _sent(receipt: dict[str, str], log_fields: dict) -> Response:
    # The send's details ride on the request's one access-log line (see logs.py).
    request.environ[SEND_LOG_FIELDS] = log_fields
    # Already four strings: answering directly skips a schema dump on the hot path,
    # while @bp.response above still documents the shape. The bytes jsonify would write
    # (compact, sorted keys, a final newline), without its provider look-ups.
    return current_app.response_class(json.dumps(receipt, separators=(",", ":"), sort_keys=True) + "\n",
                                      mimetype="application/json")


def _replay(stored: StoredAnswer) -> Response:
    response = jsonify(stored.body)
    response.status_code = stored.status
    response.headers["Idempotent-Replayed"] = "true"
    if stored.retry_after:
        response.headers["Retry-After"] = str(stored.retry_after)
    return response


def _settle(call) -> None:
    # The send has already happened (or provably not): a storage failure now must not
    # turn a sent SMS into an error that invites a second one. The key then stays
    # pending, and later retries hear that the outcome is unknown.
    try:
        settled = call()
    except StorageUnavailable:
        log.error("could not record the Idempotency-Key outcome; retries will hear it is unknown")
        return
    if not settled:
        log.error("the Idempotency-Key record was no longer this request's; its outcome was not stored")
