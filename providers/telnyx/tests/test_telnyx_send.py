"""TelnyxProvider.send: what goes on the wire, how the answer is read, how every documented error maps."""

from __future__ import annotations

import datetime as dt

import pytest
import responses
from responses import matchers
from telnyx_fakes import (
    API_KEY,
    BEARER,
    CALLBACK,
    MESSAGE_ID,
    MESSAGES_URL,
    PROFILE_ID,
    answer,
    error_body,
    message_object,
)

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    ReceiverUnsubscribed,
)
from sms_service.provider import Message
from sms_service_telnyx.provider import TelnyxProvider


def expect_send(http, message, *, url=MESSAGES_URL, extra=None, **reply):
    """Register the one POST Telnyx must receive: exact URL, JSON body and bearer key."""
    reply.setdefault("status", 200)
    body = {"from": message.sender, "to": message.receiver, "text": message.body, **(extra or {})}
    http.post(url, match=[matchers.json_params_matcher(body, strict_match=True),
                          matchers.header_matcher({"Authorization": BEARER, "Content-Type": "application/json",
                                                   "Accept": "application/json"})], **reply)


def test_send_posts_json_and_returns_the_receipt(provider, http, message):
    expect_send(http, message, json=answer({**message_object(cost={"amount": "0.0040", "currency": "USD"}),
                                            "parts": 2}))
    receipt = provider.send(message)
    assert receipt.sid == MESSAGE_ID
    assert receipt.status == "queued"
    assert receipt.num_segments == 2
    assert receipt.date_event == dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
    assert (receipt.price, receipt.price_unit) == ("0.0040", "USD")


def test_send_names_the_profile_and_the_webhook_url(env, http, message):
    provider = TelnyxProvider({**env, "TELNYX_MESSAGING_PROFILE_ID": PROFILE_ID}, timeout=5, callback_url=CALLBACK)
    with_callback = Message(**{**message.__dict__, "status_callback": CALLBACK})
    expect_send(http, with_callback, extra={"messaging_profile_id": PROFILE_ID, "webhook_url": CALLBACK},
                json=answer(message_object()))
    assert provider.send(with_callback).sid == MESSAGE_ID
    provider.close()


@pytest.mark.parametrize(("cost", "price", "unit"), [
    (None, None, None), ({"amount": None, "currency": "USD"}, None, None), ({"amount": "0", "currency": "USD"}, None, None),
    ({"amount": "-0.0051", "currency": "usd"}, "0.0051", "USD"), ({"amount": "x"}, None, None), ("0.1", None, None),
])
def test_cost_becomes_the_price(provider, http, message, cost, price, unit):
    expect_send(http, message, json=answer(message_object(cost=cost)))
    receipt = provider.send(message)
    assert (receipt.price, receipt.price_unit) == (price, unit)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("parts", 0, None), ("parts", "2", None), ("parts", True, None), ("received_at", None, "now"),
    ("received_at", "yesterday", "now"), ("received_at", "2026-11-26T08:00:00Z", dt.datetime(2026, 11, 26, 8, tzinfo=dt.UTC)),
])
def test_lenient_fields(provider, http, message, field, value, expected):
    expect_send(http, message, json=answer({**message_object(), field: value}))
    before = dt.datetime.now(dt.UTC)
    receipt = provider.send(message)
    if field == "parts":
        assert receipt.num_segments is expected
    elif expected == "now":
        assert before <= receipt.date_event <= dt.datetime.now(dt.UTC)
    else:
        assert receipt.date_event == expected


@pytest.mark.parametrize(("reply", "text"), [
    ({"body": "<html>OK</html>", "content_type": "text/html"}, "not JSON"),
    ({"json": message_object()}, "no data object"),
    ({"json": {"data": [message_object()]}}, "no data object"),
    ({"json": answer({**message_object(), "id": None})}, "lacks the message id"),
    ({"json": answer({**message_object(), "id": ""})}, "lacks the message id"),
])
def test_unreadable_2xx_is_unavailable_and_not_nothing_sent(provider, http, message, reply, text):
    expect_send(http, message, **reply)
    with pytest.raises(ProviderUnavailable, match=text) as caught:
        provider.send(message)
    assert not caught.value.nothing_sent


# Every error code PROVIDERS.md Part III lists for the send, and the HTTP statuses around them.
@pytest.mark.parametrize(("status", "body", "headers", "error", "code", "nothing_sent"), [
    (401, error_body("10009", "Authentication failed", "The API key is invalid."), {}, ProviderAuthError, "10009", True),
    (403, error_body("10009", "Authentication failed"), {}, ProviderAuthError, "10009", True),
    (401, "", {}, ProviderAuthError, None, True),
    (429, error_body("10011", "Too many requests"), {"Retry-After": "3"}, ProviderRateLimited, "10011", True),
    (400, error_body("10011", "Too many requests"), {}, ProviderRateLimited, "10011", True),
    (429, "", {"Retry-After": "2"}, ProviderRateLimited, None, True),
    (400, error_body("10002", "Invalid phone number", "The 'to' number is invalid."), {}, MessageRejected, "10002", True),
    (422, error_body("10016", "Phone number must be in +E.164 format"), {}, MessageRejected, "10016", True),
    (409, error_body("40300", "Blocked due to STOP message",
                     "Messages cannot be sent from +14156667777 to +14155550123 due to an existing block rule."),
     {}, ReceiverUnsubscribed, "40300", True),
    (422, error_body("40001", "Not routable"), {}, MessageRejected, "40001", True),
    (400, {"errors": []}, {}, MessageRejected, None, True),
    (404, error_body("10005", "Resource not found"), {}, ProviderUnavailable, "10005", False),
    (500, error_body("10007", "Unexpected error"), {}, ProviderUnavailable, "10007", False),
    # A documented code under a 5xx proves nothing: the status decides.
    (500, error_body("10002", "Invalid phone number"), {}, ProviderUnavailable, "10002", False),
    (502, error_body("10009", "Authentication failed"), {}, ProviderUnavailable, "10009", False),
    (503, error_body("10011", "Too many requests"), {}, ProviderUnavailable, "10011", False),
    (503, "<html>busy</html>", {"Retry-After": "9"}, ProviderUnavailable, None, False),
])
def test_error_mapping(provider, http, message, status, body, headers, error, code, nothing_sent):
    kind = "json" if isinstance(body, dict) else "body"
    expect_send(http, message, status=status, headers={"X-Request-Id": "RQ7", **headers}, **{kind: body})
    with pytest.raises(error) as caught:
        provider.send(message)
    exc = caught.value
    assert type(exc) is error
    assert exc.provider_code == code
    assert exc.nothing_sent is nothing_sent
    assert exc.http_status == status and exc.request_id == "RQ7"
    if error is ProviderRateLimited:
        assert exc.retry_after == (int(headers["Retry-After"]) if headers else None)
    assert "\n" not in exc.message and API_KEY not in exc.message and message.body not in exc.message


def test_rejection_message_carries_code_title_and_detail(provider, http, message):
    expect_send(http, message, status=400, json=error_body("10002", "Invalid phone number", "The 'to' number is invalid."))
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    assert caught.value.message == "telnyx error 10002: Invalid phone number: The 'to' number is invalid."


def test_send_is_never_repeated_after_a_failure(provider, message):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        expect_send(http, message, status=500, json=error_body("10007", "Unexpected error"))
        with pytest.raises(ProviderUnavailable):
            provider.send(message)
        assert len(http.calls) == 1


@pytest.mark.parametrize(("changes", "words"), [
    ({"TELNYX_API_KEY": ""}, "TELNYX_API_KEY is required"),
    ({"TELNYX_API_KEY": "KEY with space"}, "TELNYX_API_KEY must be"),
    ({"TELNYX_PUBLIC_KEY": ""}, "TELNYX_PUBLIC_KEY is required when PUBLIC_BASE_URL is set"),
    ({"TELNYX_PUBLIC_KEY": "bm90IGEga2V5"}, "TELNYX_PUBLIC_KEY must be"),
    ({"TELNYX_PUBLIC_KEY": "not base64!"}, "TELNYX_PUBLIC_KEY must be"),
    ({"TELNYX_MESSAGING_PROFILE_ID": "a b"}, "TELNYX_MESSAGING_PROFILE_ID must be"),
    ({"TELNYX_BASE_URL": "https://user:pw@api.telnyx.com"}, "TELNYX_BASE_URL must not contain credentials"),
])
def test_bad_configuration_names_the_variable_and_never_the_value(env, changes, words):
    with pytest.raises(ConfigError) as caught:
        TelnyxProvider({**env, **changes}, timeout=5, callback_url=CALLBACK)
    assert words in caught.value.message
    for value in changes.values():
        assert not value or value not in caught.value.message


def test_the_public_key_is_optional_without_callbacks(env):
    provider = TelnyxProvider({k: v for k, v in env.items() if k != "TELNYX_PUBLIC_KEY"}, timeout=5)
    provider.close()


def test_repr_hides_the_api_key(provider):
    assert API_KEY not in repr(provider) and API_KEY not in repr(provider.__dict__)
