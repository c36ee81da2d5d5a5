"""TwilioProvider.send: what goes on the wire, how a 2xx is read, how failures map."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import responses
from responses import matchers
from twilio_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    KEY_AUTH,
    MESSAGES_URL,
    TOKEN_AUTH,
    error_body,
)

from sms_service.exceptions import (
    MessageRejected,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    ReceiverUnsubscribed,
)
from sms_service_twilio.provider import TwilioProvider

SID = "SM" + "8d2f" * 8
CREATED = {
    "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": "hello",
    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
    "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api",
    "error_code": None, "error_message": None, "from": "+15005550006",
    "messaging_service_sid": None, "num_media": "0", "num_segments": "1", "price": None,
    "price_unit": "USD", "sid": SID, "status": "queued",
    "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}/Media.json"},
    "to": "+15558675310", "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json",
    "tags": {"campaign": "x"},
}


def expect_send(http, message, *, authorization=TOKEN_AUTH, url=MESSAGES_URL, **answer):
    """Register the one POST Twilio must receive: exact URL, form fields and credentials."""
    answer.setdefault("status", 201)
    http.post(
        url,
        match=[
            matchers.urlencoded_params_matcher(
                {"To": message.receiver, "From": message.sender, "Body": message.body}
            ),
            matchers.header_matcher({
                "Authorization": authorization,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            }),
        ],
        **answer,
    )


def test_send_posts_the_form_and_returns_the_receipt(provider, http, message):
    expect_send(http, message, json={**CREATED, "num_segments": "2"})
    receipt = provider.send(message)
    assert receipt.sid == SID
    assert receipt.status == "queued"
    assert receipt.num_segments == 2
    assert receipt.date_event == dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)
    assert receipt.date_event.utcoffset() == dt.timedelta(0)


def test_send_with_an_api_key_pair(key_env, http, message):
    provider = TwilioProvider(key_env, timeout=5)
    expect_send(http, message, authorization=KEY_AUTH, json=CREATED)
    assert provider.send(message).sid == SID
    provider.close()


def test_send_to_a_base_url_with_a_path(token_env, http, message):
    token_env["TWILIO_BASE_URL"] = "http://127.0.0.1:8081/fake/"
    provider = TwilioProvider(token_env, timeout=5)
    url = f"http://127.0.0.1:8081/fake/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expect_send(http, message, url=url, json=CREATED)
    assert provider.send(message).sid == SID
    provider.close()


@pytest.mark.parametrize(
    ("num_segments", "expected"),
    [("2", 2), ("1", 1), ("0", None), (None, None), ("", None), ("two", None), ("-1", None),
     ("1.5", None), (3, 3), (0, None), (True, None), ([], None), ("MISSING", None)],
)
def test_num_segments(provider, http, message, num_segments, expected):
    body = {**CREATED, "num_segments": num_segments}
    if num_segments == "MISSING":
        del body["num_segments"]
    expect_send(http, message, json=body)
    assert provider.send(message).num_segments == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [("queued", "queued"), ("accepted", "accepted"), ("scheduled", "scheduled"),
     (None, "queued"), ("", "queued"), (7, "queued"), ("MISSING", "queued")],
)
def test_status(provider, http, message, status, expected):
    body = {**CREATED, "status": status}
    if status == "MISSING":
        del body["status"]
    expect_send(http, message, json=body)
    assert provider.send(message).status == expected


@pytest.mark.parametrize(
    ("date_created", "expected"),
    [
        ("Thu, 24 Aug 2023 05:01:45 +0000", dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)),
        ("Thu, 24 Aug 2023 07:01:45 +0200", dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)),
        ("Wed, 23 Aug 2023 22:01:45 -0700", dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)),
        ("Thu, 24 Aug 2023 05:01:45 -0000", dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)),
        ("Thu, 24 Aug 2023 05:01:45 GMT", dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC)),
        (None, "now"), ("", "now"), ("yesterday", "now"), ("2023-08-24T05:01:45Z", "now"),
        ("Thu, 31 Feb 2023 05:01:45 +0000", "now"), (1692853305, "now"), ("MISSING", "now"),
        ("Fri, 31 Dec 9999 23:30:00 -0100", "now"), ("Thu, 24 Aug 0100 05:01:45 +0000", "now"),
        ("Wed, 31 Dec 1969 23:59:59 +0000", "now"), ("Thu, 24 Aug \u0662\u0660\u0662\u0663 05:01:45 +0000", "now"),
        ("Thu, 24 Aug 2023 05:01:4\u00b2 +0000", "now"),
    ],
)
def test_date_created_becomes_aware_utc(provider, http, message, date_created, expected):
    body = {**CREATED, "date_created": date_created}
    if date_created == "MISSING":
        del body["date_created"]
    expect_send(http, message, json=body)
    before = dt.datetime.now(dt.UTC)
    date_event = provider.send(message).date_event
    assert date_event.tzinfo is not None and date_event.utcoffset() == dt.timedelta(0)
    if expected == "now":
        assert before <= date_event <= dt.datetime.now(dt.UTC)
    else:
        assert date_event == expected


@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_is_a_success(provider, http, message, status):
    expect_send(http, message, status=status, json=CREATED)
    assert provider.send(message).sid == SID


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ({"body": "<html>OK</html>", "content_type": "text/html"}, "not JSON"),
        ({"body": b"\xff\xfe{"}, "not JSON"),
        ({"body": ""}, "not JSON"),
        ({"json": [CREATED]}, "not a JSON object"),
        ({"json": "SM123"}, "not a JSON object"),
        ({"json": {**CREATED, "sid": None}}, "answer lacks the message id"),
        ({"json": {**CREATED, "sid": ""}}, "answer lacks the message id"),
        ({"json": {**CREATED, "sid": "  "}}, "answer lacks the message id"),
        ({"json": {**CREATED, "sid": 12345}}, "answer lacks the message id"),
        ({"json": {k: v for k, v in CREATED.items() if k != "sid"}}, "answer lacks the message id"),
    ],
)
def test_unreadable_2xx_is_unavailable(provider, http, message, answer, text):
    expect_send(http, message, **answer)
    with pytest.raises(ProviderUnavailable, match=text) as caught:
        provider.send(message)
    assert caught.value.http_status == 201


INVALID_TO = "The 'To' number +15558675310 is not a valid phone number."


@pytest.mark.parametrize(
    ("status", "answer", "headers", "error", "code", "retry_after"),
    [
        (400, error_body(21211, INVALID_TO, 400), {}, MessageRejected, 21211, None),
        (400, error_body(21212, "Invalid From Number", 400), {}, MessageRejected, 21212, None),
        (400, error_body(21606, "The From phone number is not a valid...", 400), {},
         MessageRejected, 21606, None),
        (400, error_body(21608, "The number is unverified.", 400), {}, MessageRejected, 21608,
         None),
        # A MessageRejected that also tells the service to suppress the receiver (SPEC section 12).
        (400, error_body(21610, "Attempt to send to unsubscribed recipient", 400), {},
         ReceiverUnsubscribed, 21610, None),
        (400, error_body(21614, "'To' number is not a valid mobile number", 400), {},
         MessageRejected, 21614, None),
        (400, error_body(21617, "The concatenated message body exceeds the 1600 character limit",
                         400), {}, MessageRejected, 21617, None),
        (400, {**error_body(21211, INVALID_TO, 400), "code": "21211", "detail": "x"}, {},
         MessageRejected, 21211, None),
        (400, "Bad Request", {}, MessageRejected, None, None),
        (400, [1, 2], {}, MessageRejected, None, None),
        (400, {"message": None, "code": None}, {}, MessageRejected, None, None),
        (401, error_body(20003, "Authenticate", 401), {}, ProviderAuthError, 20003, None),
        (403, error_body(20003, "Permission Denied", 403), {}, ProviderAuthError, 20003, None),
        (401, "", {}, ProviderAuthError, None, None),
        (429, error_body(20429, "Too Many Requests", 429), {"Retry-After": "7"},
         ProviderRateLimited, 20429, 7),
        (429, error_body(20429, "Too Many Requests", 429), {}, ProviderRateLimited, 20429, None),
        (429, "", {"Retry-After": "2"}, ProviderRateLimited, None, 2),
        (400, error_body(20429, "Too Many Requests", 400), {"Retry-After": "3"},
         ProviderRateLimited, 20429, 3),
        (500, error_body(20500, "Internal Server Error", 500), {}, ProviderUnavailable, 20500,
         None),
        (502, "<html>Bad Gateway</html>", {}, ProviderUnavailable, None, None),
        (503, error_body(20503, "Service Unavailable", 503), {"Retry-After": "5"},
         ProviderUnavailable, 20503, None),
        (302, "", {"Location": "https://elsewhere.example/"}, ProviderUnavailable, None, None),
    ],
)
def test_error_mapping(provider, http, message, status, answer, headers, error, code,
                       retry_after):
    kind = "json" if isinstance(answer, dict | list) else "body"
    expect_send(http, message, status=status, headers={"Twilio-Request-Id": "RQ123", **headers},
                **{kind: answer})
    with pytest.raises(error) as caught:
        provider.send(message)
    exc = caught.value
    assert type(exc) is error
    assert exc.provider_code == code
    assert exc.retry_after == retry_after
    assert exc.http_status == status
    assert exc.request_id == "RQ123"
    assert "\n" not in exc.message
    assert AUTH_TOKEN not in exc.message


def test_rejection_message_carries_twilio_code_and_reason(provider, http, message):
    expect_send(http, message, status=400, json=error_body(21211, INVALID_TO, 400))
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    assert caught.value.message == f"twilio error 21211: {INVALID_TO}"


def test_rejection_without_a_twilio_body_still_says_something(provider, http, message):
    expect_send(http, message, status=400, body="nope")
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    assert caught.value.message == "twilio: answered HTTP 400"


def test_reason_is_one_bounded_line(provider, http, message):
    reason = "Line one\nline two\r\n\tline\x00three " + "x" * 500
    expect_send(http, message, status=400, json=error_body(21211, reason, 400))
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    text = caught.value.message
    assert text.startswith("twilio error 21211: Line one line two line three x")
    assert text.endswith("...")
    assert len(text) <= len("twilio error 21211: ") + 200
    assert text.isprintable()


def test_send_is_never_repeated_after_a_failure(provider, message):
    # One registered answer and a strict mock: a second POST would be a second SMS.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        expect_send(http, message, status=503, json=error_body(20503, "down", 503))
        with pytest.raises(ProviderUnavailable):
            provider.send(message)
        assert len(http.calls) == 1


def test_an_error_echoing_the_callback_url_or_the_token_is_scrubbed(token_env, http, message):
    callback = "https://SMS.Example.com/callbacks/twilio/status"
    provider = TwilioProvider(token_env, timeout=5, callback_url=callback)
    message = dataclasses.replace(message, status_callback=callback)
    reason = f"The StatusCallback URL {callback} is not valid (token {AUTH_TOKEN})"
    http.add(responses.POST, MESSAGES_URL, status=400, json=error_body(21609, reason, 400))
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    provider.close()
    assert caught.value.message == "twilio error 21609: The StatusCallback URL [redacted] is not valid " \
                                   "(token [redacted])"
    assert callback not in str(caught.value)
