"""PlivoProvider.send: what goes on the wire, how a 202 is read, how every documented failure maps."""

from __future__ import annotations

import datetime as dt

import pytest
import responses
from plivo_fakes import AUTH_TOKEN, BASIC, CALLBACK, MESSAGE_UUID, MESSAGES_URL, QUEUED, error_body
from responses import matchers

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from sms_service.provider import Message
from sms_service_plivo.provider import PlivoProvider


def expect_send(http, message, *, url=MESSAGES_URL, callback=None, **answer):
    """Register the one POST Plivo must receive: exact URL, JSON body and credentials."""
    answer.setdefault("status", 202)
    body = {"src": message.sender, "dst": message.receiver, "text": message.body, "type": "sms"}
    if callback:
        body.update(url=callback, method="POST")
    http.post(url, match=[matchers.json_params_matcher(body, strict_match=True),
                          matchers.header_matcher({"Authorization": BASIC, "Content-Type": "application/json",
                                                   "Accept": "application/json"})], **answer)


def test_send_posts_json_and_returns_the_receipt(provider, http, message):
    expect_send(http, message, json=QUEUED)
    before = dt.datetime.now(dt.UTC)
    receipt = provider.send(message)
    assert receipt.sid == MESSAGE_UUID
    assert receipt.status == "queued"
    assert receipt.num_segments is None  # Plivo's answer has no count: the core counts
    assert before <= receipt.date_event <= dt.datetime.now(dt.UTC)
    assert receipt.price is None


def test_send_asks_for_status_callbacks_when_the_message_carries_a_url(provider, http, message):
    with_callback = Message(**{**message.__dict__, "status_callback": CALLBACK})
    expect_send(http, with_callback, callback=CALLBACK, json=QUEUED)
    assert provider.send(with_callback).sid == MESSAGE_UUID


def test_send_to_a_base_url_with_a_path(env, http, message):
    provider = PlivoProvider({**env, "PLIVO_BASE_URL": "http://127.0.0.1:8082/fake/"}, timeout=5)
    expect_send(http, message, url=f"http://127.0.0.1:8082/fake/v1/Account/{env['PLIVO_AUTH_ID']}/Message/",
                json=QUEUED)
    assert provider.send(message).sid == MESSAGE_UUID
    provider.close()


@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_with_a_uuid_is_a_success(provider, http, message, status):
    expect_send(http, message, status=status, json=QUEUED)
    assert provider.send(message).sid == MESSAGE_UUID


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ({"body": "<html>OK</html>", "content_type": "text/html"}, "not JSON"),
        ({"body": ""}, "not JSON"),
        ({"json": [QUEUED]}, "not a JSON object"),
        ({"json": {**QUEUED, "message_uuid": []}}, "lacks the message uuid"),
        ({"json": {**QUEUED, "message_uuid": MESSAGE_UUID}}, "lacks the message uuid"),
        ({"json": {**QUEUED, "message_uuid": [""]}}, "lacks the message uuid"),
        ({"json": {**QUEUED, "message_uuid": [7]}}, "lacks the message uuid"),
        ({"json": {**QUEUED, "message_uuid": ["a\nb"]}}, "lacks the message uuid"),
        ({"json": {"api_id": "x", "message": "message(s) queued"}}, "lacks the message uuid"),
    ],
)
def test_unreadable_2xx_is_unavailable_and_not_nothing_sent(provider, http, message, answer, text):
    expect_send(http, message, **answer)
    with pytest.raises(ProviderUnavailable, match=text) as caught:
        provider.send(message)
    assert not caught.value.nothing_sent


# Every HTTP error Plivo documents for the Message API: 400, 401, 404, 405, 429, 500.
@pytest.mark.parametrize(
    ("status", "answer", "headers", "error", "nothing_sent", "words"),
    [
        (400, error_body("invalid destination number"), {}, MessageRejected, True,
         "plivo: invalid destination number"),
        (400, error_body("src parameter not present"), {}, MessageRejected, True, "src parameter not present"),
        (400, {"api_id": "x", "error": {"dst": ["This field is required."]}}, {}, MessageRejected, True,
         "dst: This field is required."),
        (400, "Bad Request", {}, MessageRejected, True, "plivo: answered HTTP 400"),
        (401, "Could not verify your access level for that URL.\nYou have to login with proper credentials",
         {}, ProviderAuthError, True, "refused our credentials"),
        (401, error_body("authentication failed"), {}, ProviderAuthError, True, "refused our credentials"),
        (403, error_body("forbidden"), {}, ProviderAuthError, True, "refused our credentials"),
        # A wrong base URL or auth id, not a judgement of the message: an SMS is not proven unsent.
        (404, error_body("not found"), {}, ProviderUnavailable, False, "HTTP 404"),
        (405, error_body("method not allowed"), {}, ProviderUnavailable, False, "HTTP 405"),
        (429, error_body("too many requests"), {"Retry-After": "4"}, ProviderRateLimited, True,
         "too many requests"),
        (429, "", {}, ProviderRateLimited, True, "HTTP 429"),
        (500, error_body("internal error"), {}, ProviderUnavailable, False, "HTTP 500"),
        (503, "<html>down</html>", {"Retry-After": "5"}, ProviderUnavailable, False, "HTTP 503"),
    ],
)
def test_error_mapping(provider, http, message, status, answer, headers, error, nothing_sent, words):
    kind = "json" if isinstance(answer, dict) else "body"
    expect_send(http, message, status=status, headers={"X-Request-Id": "RQ9", **headers}, **{kind: answer})
    with pytest.raises(error) as caught:
        provider.send(message)
    exc = caught.value
    assert type(exc) is error
    assert exc.nothing_sent is nothing_sent
    assert exc.http_status == status
    assert exc.request_id == "RQ9"
    assert words in exc.message
    assert exc.retry_after == (int(headers["Retry-After"]) if status == 429 and headers else None)
    assert "\n" not in exc.message and AUTH_TOKEN not in exc.message and message.body not in exc.message


def test_a_long_reason_is_one_bounded_line(provider, http, message):
    expect_send(http, message, status=400, json=error_body("bad\r\nnumber\x00 " + "x" * 500))
    with pytest.raises(MessageRejected) as caught:
        provider.send(message)
    text = caught.value.message
    assert text.startswith("plivo: bad number x") and text.endswith("...") and text.isprintable()
    assert len(text) <= len("plivo: ") + 200


def test_send_is_never_repeated_after_a_failure(provider, message):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        expect_send(http, message, status=500, json=error_body("internal error"))
        with pytest.raises(ProviderUnavailable):
            provider.send(message)
        assert len(http.calls) == 1


@pytest.mark.parametrize(("name", "value", "words"), [
    ("PLIVO_AUTH_ID", "", "PLIVO_AUTH_ID is required"),
    ("PLIVO_AUTH_ID", "MA/../x", "PLIVO_AUTH_ID must be"),
    ("PLIVO_AUTH_TOKEN", "", "PLIVO_AUTH_TOKEN is required"),
    ("PLIVO_AUTH_TOKEN", "secret with space", "PLIVO_AUTH_TOKEN must be"),
    ("PLIVO_AUTH_TOKEN", "secret\n", "PLIVO_AUTH_TOKEN must be"),
    ("PLIVO_BASE_URL", "ftp://api.plivo.com", "PLIVO_BASE_URL must be"),
])
def test_bad_configuration_names_the_variable_and_never_the_value(env, name, value, words):
    with pytest.raises(ConfigError) as caught:
        PlivoProvider({**env, name: value}, timeout=5)
    assert words in caught.value.message
    assert not value.strip() or value.strip() not in caught.value.message


def test_repr_names_the_account_but_not_the_token(provider):
    assert "MAZDQ1ZJIYMDZKMMZKYM" in repr(provider) and AUTH_TOKEN not in repr(provider)
    assert AUTH_TOKEN not in repr(provider.__dict__)
