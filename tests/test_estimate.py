"""POST /estimate (SPEC section 14): it answers what /send would do now, through the very
same guards in check mode, and consumes nothing."""

from __future__ import annotations

import pytest
import responses
from prometheus_client import REGISTRY
from support.payloads import REFERENCE, fresh_receiver, message
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app

API_KEY = "api-key-0123456789abcdef"
TWILIO_BALANCE = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Balance.json"
TWILIO_SEND = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
THREE_SEGMENTS = "a" * 400


def console(uri: str = "memory://", **extra):
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": uri, **extra}).test_client()


def same_answer(estimate, send) -> None:
    assert estimate.status_code == send.status_code, (estimate.json, send.json)
    assert estimate.json == send.json
    if "Retry-After" in send.headers:
        # Both are rounded up to whole seconds, a moment apart.
        assert abs(int(estimate.headers["Retry-After"]) - int(send.headers["Retry-After"])) <= 1
    else:
        assert "Retry-After" not in estimate.headers


def _suppressed(client):
    number = fresh_receiver()
    client.application.extensions["sms_service"].suppression.learn(number, "21610")
    return message(receiver=number)


def _delayed(client):
    body = message()
    assert client.post("/send", json=body).status_code == 200
    return body


def _budget_spent(client):
    assert client.post("/send", json=message(body="a" * 200)).status_code == 200
    return message(body="a" * 200)


# Each guard's refusal: (environment, how to reach it, status, words of the message).
REFUSALS = {
    "validation: receiver": ({}, lambda c: message(receiver="+1 555"), 400, "receiver: not an E.164"),
    "validation: unknown field": ({}, lambda c: {**message(), "extra": "x"}, 400, "extra: unknown field"),
    "validation: empty body": ({}, lambda c: message(body="  "), 400, "body: must not be empty"),
    "country not allowed": ({"ALLOWED_COUNTRIES": "GB"}, lambda c: message(), 403, "US is not allowed"),
    "blocked number type": ({}, lambda c: message(receiver="+19005551234"), 403, "premium-rate"),
    "opted out": ({}, _suppressed, 403, "opted out"),
    "exponential delay": ({}, _delayed, 429, "too many messages to this number"),
    "segment budget": ({"SEGMENT_BUDGETS": "US=3/1h"}, _budget_spent, 429, "segment budget for US"),
    "over the whole budget": ({"SEGMENT_BUDGETS": "US=2/1h"}, lambda c: message(body=THREE_SEGMENTS), 403,
                              "more than the whole budget for US"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_estimate_gives_the_very_refusal_of_send(case, storage_uri):
    env, reach, status, words = REFUSALS[case]
    client = console(storage_uri, **env)
    body = reach(client)
    estimate = client.post("/estimate", json=body)
    assert estimate.status_code == status and words in estimate.json["message"]
    same_answer(estimate, client.post("/send", json=body))


@pytest.mark.parametrize(
    ("balance", "status"), [({"balance": "0.00", "currency": "USD"}, 503), ({"nothing": "here"}, 503)])
def test_estimate_gives_the_balance_refusal_of_send(balance, status):
    client = create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                         "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_EMPTY_BALANCE_CHECK": "true"}).test_client()
    body = message()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(TWILIO_BALANCE, json=balance)
        estimate = client.post("/estimate", json=body)
        assert estimate.status_code == status
        same_answer(estimate, client.post("/send", json=body))
        assert not [call for call in mock.calls if call.request.method == "POST"]  # nothing sent


def test_estimate_answers_five_strings_and_sends_nothing():
    client = create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                         "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_EMPTY_BALANCE_CHECK": "true"}).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(TWILIO_BALANCE, json={"balance": "12.50", "currency": "USD"})
        answer = client.post("/estimate", json=message(receiver="+447400123456", body="Olá " + "a" * 70))
        assert [call.request.method for call in mock.calls] == ["GET"]  # the balance, no send
    assert answer.status_code == 200
    assert answer.json == {"numSegments": "2", "encoding": "UCS-2", "country": "GB", "numberType": "MOBILE",
                           "provider": "twilio"}
    assert all(isinstance(value, str) for value in answer.json.values())


@pytest.mark.parametrize(
    ("receiver", "body", "expected"),
    [
        (REFERENCE["receiver"], "Your SMS body", {"numSegments": "1", "encoding": "GSM-7", "country": "US",
                                                  "numberType": "UNKNOWN"}),
        ("+15017122661", "{" * 81, {"numSegments": "2", "encoding": "GSM-7", "country": "US",
                                    "numberType": "FIXED_LINE_OR_MOBILE"}),
        ("+80012345678", "hi", {"numSegments": "1", "encoding": "GSM-7", "country": "unknown",
                                "numberType": "TOLL_FREE"}),
    ],
)
def test_estimate_fields(receiver, body, expected):
    # +800 is an international network: refused unless allowed (SPEC 21, tested on its own).
    answer = console(ALLOW_INTERNATIONAL_NETWORKS="true").post("/estimate", json=message(receiver=receiver, body=body))
    assert answer.status_code == 200, answer.json
    assert answer.json == {**expected, "provider": "console"}


def test_an_estimate_consumes_nothing_the_same_send_still_passes(storage_uri):
    client = console(storage_uri, SEGMENT_BUDGETS="US=3/1h")
    body = message(body=THREE_SEGMENTS)  # exactly the whole budget, to a receiver with no streak
    for _ in range(3):
        assert client.post("/estimate", json=body).status_code == 200
    assert client.post("/send", json=body).status_code == 200
    # Now the estimate sees what the send consumed: the delay first, like /send.
    after = client.post("/estimate", json=body)
    assert after.status_code == 429 and "too many messages to this number" in after.json["message"]
    other = client.post("/estimate", json=message(body="x"))
    assert other.status_code == 429 and "segment budget for US" in other.json["message"]


def test_an_estimate_of_an_opted_out_number_is_not_counted_as_a_refused_send():
    client = console()
    before = REGISTRY.get_sample_value("sms_suppressed_sends_total") or 0
    rejections = REGISTRY.get_sample_value("sms_guard_rejections_total", {"guard": "suppression"}) or 0
    assert client.post("/estimate", json=_suppressed(client)).status_code == 403
    assert (REGISTRY.get_sample_value("sms_suppressed_sends_total") or 0) == before
    assert (REGISTRY.get_sample_value("sms_guard_rejections_total", {"guard": "suppression"}) or 0) == rejections
    estimates = REGISTRY.get_sample_value("sms_estimate_requests_total",
                                          {"status_class": "4xx", "reason": "opted_out"})
    assert estimates and estimates >= 1


def test_estimates_count_against_the_global_rate_limit():
    client = console(RATE_LIMIT_MAX_REQUESTS="2", RATE_LIMIT_TIME_WINDOW="1h")
    assert client.post("/estimate", json=message()).status_code == 200
    assert client.post("/estimate", json=message()).status_code == 200
    for route in ("/estimate", "/send"):
        refused = client.post(route, json=message())
        assert refused.status_code == 429 and "rate limit of 2 requests" in refused.json["message"]
        assert int(refused.headers["Retry-After"]) >= 3500


def test_estimate_takes_the_api_key_rules_of_send():
    client = console(API_KEYS=API_KEY)
    refused = client.post("/estimate", json=message())
    assert refused.status_code == 401 and refused.json["statusCode"] == "401"
    wrong = client.post("/estimate", json=message(), headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status_code == 401
    ok = client.post("/estimate", json=message(), headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [({"data": "{", "content_type": "application/json"}, 400),
     ({"data": "[]", "content_type": "application/json"}, 400),
     ({"data": "x", "content_type": "text/plain"}, 415),
     ({"data": '{"a": "' + "x" * 17_000 + '"}', "content_type": "application/json"}, 413)],
)
def test_estimate_refuses_bad_bodies_like_send(kwargs, status):
    client = console()
    estimate, send = client.post("/estimate", **kwargs), client.post("/send", **kwargs)
    assert estimate.status_code == status
    same_answer(estimate, send)


def test_an_idempotency_key_is_refused_not_silently_ignored():
    client = console()
    body = message()
    refused = client.post("/estimate", json=body, headers={"Idempotency-Key": "k-1"})
    assert refused.status_code == 400
    assert refused.json["message"].startswith("Idempotency-Key is not taken by /estimate")
    assert client.post("/send", json=body, headers={"Idempotency-Key": "k-1"}).status_code == 200


def test_estimate_is_in_the_openapi_document():
    document = console().get("/documentation/json").json
    operation = document["paths"]["/estimate"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "415", "429", "503"}
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    assert set(document["components"]["schemas"][name]["properties"]) == {
        "numSegments", "encoding", "country", "numberType", "provider"}
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema == document["paths"]["/send"]["post"]["requestBody"]["content"]["application/json"]["schema"]
