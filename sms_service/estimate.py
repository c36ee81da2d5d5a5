"""The POST /estimate route: what POST /send would do now, without sending or consuming anything."""

from __future__ import annotations

import flask_smorest
from flask import Response, current_app, g, jsonify, request

from sms_service import metrics
from sms_service.errors import ServiceBlueprint
from sms_service.schemas import ErrorSchema, EstimateSchema, SendRequestSchema
from sms_service.send import ERROR_STATUSES, _documented, _payload, guard_before_parsing, render

bp = ServiceBlueprint("estimate", __name__, url_prefix="",
                      description="Ask what a send would do, without sending")

# The same API key, the same global rate limit as /send: an estimate is no free oracle
# of which numbers are suppressed or how much budget is left.
bp.before_request(guard_before_parsing)

_STATUSES = {
    **{status: ERROR_STATUSES[status] for status in (401, 404, 413, 415, 500)},
    400: ("invalid request (the very answer /send would give), or an Idempotency-Key header", None),
    403: ("/send would refuse: destination country or number type not allowed, receiver opted "
          "out, or more segments than the country's whole budget", None),
    429: ("the global rate limit (which estimates count against), or /send would refuse: the "
          "receiver's delay or the country's segment budget", ERROR_STATUSES[429][1]),
    502: ("the balance check failed: the provider refused our credentials or answered garbage", None),
    503: ("/send would refuse: balance empty or unknown; or shared storage unavailable", None),
}


@bp.route("/estimate", methods=["POST"])
@_documented(
    bp.arguments(SendRequestSchema(), location="json", description="the body /send would get"),
    bp.response(200, EstimateSchema, description="/send would pass every guard and send this message"),
    *(bp.alt_response(status, schema=ErrorSchema, description=description, headers=headers)
      for status, (description, headers) in sorted(_STATUSES.items())),
)
def estimate() -> Response:
    """Tell what POST /send would do now with this body: send nothing, consume no delay or budget."""
    if "Idempotency-Key" in request.headers:
        # An estimate reserves nothing, and a key already used would make /send replay
        # its first answer instead: refused rather than quietly answering another question.
        flask_smorest.abort(400, message="Idempotency-Key is not taken by /estimate, which sends "
                                         "and reserves nothing; leave it out")
    payload = _payload()
    services = current_app.extensions["sms_service"]
    body = payload["body"] if "body" in payload else render(services, payload).body
    return jsonify(services.dispatcher.estimate(payload["receiver"], body))


@bp.after_request
def count_estimate(response: Response) -> Response:
    """Count the answer by outcome, as /send's are."""
    outcome = "ok" if response.status_code < 400 else g.get("outcome", "http_error")
    metrics.ESTIMATE_REQUESTS.labels(f"{response.status_code // 100}xx", outcome).inc()
    return response
