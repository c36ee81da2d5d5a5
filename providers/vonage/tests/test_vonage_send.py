"""VonageProvider.send: what goes on the wire, how each answer shape and status code is read."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import responses
from responses import matchers
from vonage_fakes import API_SECRET, BASIC, SEND_URL, part, refusal

from sms_service.exceptions import (
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from sms_service.provider import Message

MESSAGE = Message(sender="+447700900100", receiver="+447700900000", body="Code: 1234 & more = fine",
                  num_segments=1, encoding="GSM-7")
FORM = {"from": "447700900100", "to": "447700900000", "text": "Code: 1234 & more = fine"}


def expect_send(http, form=None, status=200, **kwargs):
    """Register the one send the test allows: exact form fields and Basic auth, nothing else."""
    http.add(responses.POST, SEND_URL, status=status,
             match=[matchers.urlencoded_params_matcher(form or FORM),
                    matchers.header_matcher({"Authorization": BASIC})], **kwargs)


def test_send_posts_the_form_with_basic_auth_and_reads_the_receipt(make_provider, http):
    expect_send(http, json={"message-count": "1", "messages": [part()]})
    before = dt.datetime.now(dt.UTC)
    receipt = make_provider().send(MESSAGE)
    assert receipt.sid == "0A0000000123ABCD1"
    assert receipt.status == "accepted"
    assert receipt.num_segments == 1
    assert (receipt.price, receipt.price_unit) == ("0.03330000", "EUR")
    assert receipt.date_event >= before and receipt.date_event.tzinfo is not None
    # The secret travels only in the Authorization header, never in the form or URL.
    sent = http.calls[0].request
    assert API_SECRET not in sent.url and API_SECRET not in sent.body


def test_long_message_one_entry_per_part_first_id_sum_of_prices(make_provider, http):
    parts = [part(message_id="0A01", price="0.04120000"), part(message_id="0A02", price="0.04120000"),
             part(message_id="0A03", price="0.00760000")]
    expect_send(http, json={"message-count": "3", "messages": parts})
    receipt = make_provider(VONAGE_CURRENCY="usd").send(MESSAGE)
    assert (receipt.sid, receipt.num_segments) == ("0A01", 3)
    assert (receipt.price, receipt.price_unit) == ("0.09000000", "USD")


def test_a_part_without_a_price_gives_no_price(make_provider, http):
    expect_send(http, json={"message-count": "2", "messages": [part(message_id="A"), part(message_id="B", price=None)]})
    receipt = make_provider().send(MESSAGE)
    assert (receipt.price, receipt.price_unit) == (None, None)


def test_unicode_text_and_the_callback_ask_for_a_receipt(make_provider, http):
    callback = "https://sms.example.com/callbacks/vonage/status"
    message = Message(sender="AcmeInc", receiver="+919876543210", body="À bientôt 🙂", num_segments=1,
                      encoding="UCS-2", status_callback=callback)
    expect_send(http, {"from": "AcmeInc", "to": "919876543210", "text": "À bientôt 🙂", "type": "unicode",
                       "status-report-req": "1", "callback": callback}, json={"messages": [part()]})
    assert make_provider(callback).send(message).sid == "0A0000000123ABCD1"


def test_a_callback_over_100_characters_is_left_to_the_account_setting(make_provider, http, caplog):
    callback = "https://sms.example.com/" + "x" * 60 + "/callbacks/vonage/status?token=" + "t" * 43
    caplog.set_level(logging.WARNING)
    provider = make_provider(callback)
    warning = [r.getMessage() for r in caplog.records if "over Vonage's 100" in r.getMessage()]
    assert len(warning) == 1 and str(len(callback)) in warning[0] and "t" * 43 not in warning[0]
    message = Message(sender="AcmeInc", receiver="+447700900000", body="hi", num_segments=1, encoding="GSM-7",
                      status_callback=callback)
    expect_send(http, {"from": "AcmeInc", "to": "447700900000", "text": "hi", "status-report-req": "1"},
                json={"messages": [part()]})
    provider.send(message)


@pytest.mark.parametrize("ids", [{"entity-id": "1101000000000001", "content-id": "1107000000000002"},
                                 {"entity_id": "1101000000000001", "content_id": "1107000000000002"}])
def test_dlt_template_ids_are_sent(make_provider, http, ids):
    message = Message(sender="ACMEIN", receiver="+919876543210", body="Your OTP is 1234", num_segments=1,
                      encoding="GSM-7", template_ids=ids)
    expect_send(http, {"from": "ACMEIN", "to": "919876543210", "text": "Your OTP is 1234",
                       "entity-id": "1101000000000001", "content-id": "1107000000000002"},
                json={"messages": [part()]})
    make_provider().send(message)


# Every status code of PROVIDERS.md: (code, class, nothing_sent).
CODES = [
    ("1", ProviderRateLimited, True),
    ("2", MessageRejected, True),
    ("3", MessageRejected, True),
    ("4", ProviderAuthError, True),
    ("5", ProviderUnavailable, False),
    ("6", MessageRejected, True),
    ("7", MessageRejected, True),
    ("8", ProviderAuthError, True),
    ("9", ProviderUnavailable, True),
    ("10", ProviderRateLimited, True),
    ("11", ProviderAuthError, True),
    ("12", MessageRejected, True),
    ("14", ProviderAuthError, True),
    ("15", MessageRejected, True),
    ("22", MessageRejected, True),
    ("23", ProviderUnavailable, True),
    ("29", MessageRejected, True),
    ("32", ProviderAuthError, True),
    ("33", MessageRejected, True),
    ("99", ProviderUnavailable, False),  # undocumented: in doubt, the SMS may have gone
]


@pytest.mark.parametrize(("code", "cls", "nothing_sent"), CODES, ids=[c[0] for c in CODES])
def test_every_status_code_maps_to_the_exception_tree(make_provider, http, code, cls, nothing_sent):
    expect_send(http, json=refusal(code, "Some reason\nfrom Vonage"))
    with pytest.raises(ProviderError) as caught:
        make_provider().send(MESSAGE)
    error = caught.value
    assert type(error) is cls
    assert error.nothing_sent is nothing_sent
    assert error.provider_code == code
    assert error.http_status == 200
    assert "\n" not in error.message
    if cls is MessageRejected:
        assert error.message == f"vonage error {code}: Some reason from Vonage"
    assert len(http.calls) == 1  # never repeated


def test_throttled_keeps_a_retry_after(make_provider, http):
    expect_send(http, json=refusal("1", "Throughput Rate Exceeded"), headers={"Retry-After": "3"})
    with pytest.raises(ProviderRateLimited) as caught:
        make_provider().send(MESSAGE)
    assert caught.value.retry_after == 3


def test_partner_quota_says_no_credit_and_fails_over(make_provider, http):
    expect_send(http, json=refusal("9", "Partner quota exceeded"))
    with pytest.raises(ProviderUnavailable) as caught:
        make_provider().send(MESSAGE)
    assert caught.value.nothing_sent and "no credit" in caught.value.message


def test_a_status_given_as_a_number_is_read(make_provider, http):
    expect_send(http, json={"messages": [{"status": 4, "error-text": "Bad Credentials"}]})
    with pytest.raises(ProviderAuthError):
        make_provider().send(MESSAGE)


@pytest.mark.parametrize("refused", ["1", "4", "9"])
def test_some_parts_refused_is_never_nothing_sent(make_provider, http, refused):
    expect_send(http, json={"message-count": "2", "messages": [part(), {"status": refused, "error-text": "x"}]})
    with pytest.raises(ProviderUnavailable) as caught:
        make_provider().send(MESSAGE)
    assert not caught.value.nothing_sent
    assert "some parts" in caught.value.message


@pytest.mark.parametrize(("status", "cls"), [(401, ProviderAuthError), (429, ProviderRateLimited),
                                             (500, ProviderUnavailable), (400, MessageRejected)])
def test_http_errors_map_by_status(make_provider, http, status, cls):
    expect_send(http, status=status, json={"type": "https://developer.vonage.com/api-errors", "title": "Nope"})
    with pytest.raises(cls):
        make_provider().send(MESSAGE)


@pytest.mark.parametrize("body", [
    b"<html>not json</html>", b"[]", b"{}", b'{"messages": []}', b'{"messages": "0"}',
    b'{"messages": [{"to": "44"}]}', b'{"messages": [{"status": "0"}]}', b'{"messages": [{"status": "0", "message-id": ""}]}',
])
def test_unreadable_2xx_is_unavailable_and_not_nothing_sent(make_provider, http, body):
    expect_send(http, body=body)
    with pytest.raises(ProviderUnavailable) as caught:
        make_provider().send(MESSAGE)
    assert not caught.value.nothing_sent
