"""Vonage delivery receipts and inbound messages: each shape, each signature method, the token path."""

from __future__ import annotations

import time

import pytest
from vonage_fakes import (
    INBOUND_URL,
    SHAPES,
    SIGNATURE_SECRET,
    STATUS_URL,
    as_form,
    as_get,
    as_json,
    inbound_fields,
    receipt_fields,
    sign,
)

from sms_service.exceptions import CallbackRefused
from sms_service.provider import CallbackRequest
from sms_service_vonage import signature
from sms_service_vonage.provider import VonageProvider


@pytest.fixture
def signed(make_provider):
    """A provider verifying sig (md5hash, Vonage's default method)."""
    return make_provider(STATUS_URL, VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET)


@pytest.fixture
def unsigned(make_provider):
    """A provider without a signature secret: the service checked the URL's token."""
    return make_provider(STATUS_URL + "?token=abc")


def test_signing_follows_the_signature_secret(make_provider):
    assert VonageProvider.signs_callbacks({"VONAGE_SIGNATURE_SECRET": "x"}) is True
    assert VonageProvider.signs_callbacks({"VONAGE_SIGNATURE_SECRET": ""}) is False
    assert VonageProvider.signs_callbacks({}) is False
    assert make_provider(VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET).callbacks_signed is True
    assert make_provider().callbacks_signed is False


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", signature.METHODS)
def test_a_signed_receipt_in_each_shape_and_method(make_provider, shape, method):
    provider = make_provider(STATUS_URL, VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET, VONAGE_SIGNATURE_METHOD=method)
    request = SHAPES[shape](STATUS_URL, sign(receipt_fields(), method=method))
    [update] = provider.parse_status_callback(request)
    assert (update.sid, update.status, update.provider_status) == ("0A0000000123ABCD1", "delivered", "delivered")
    assert (update.receiver, update.error_code, update.opted_out) == ("+447700900000", None, False)
    assert (update.price, update.price_unit) == ("0.03330000", "EUR")


@pytest.mark.parametrize("shape", SHAPES)
def test_tampered_missing_wrong_key_and_other_method_are_refused(make_provider, shape):
    provider = make_provider(STATUS_URL, VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET, VONAGE_SIGNATURE_METHOD="sha1")
    good = sign(receipt_fields(), method="sha1")
    forgeries = [
        {**good, "status": "failed"},                                   # tampered after signing
        {k: v for k, v in good.items() if k != "sig"},                  # no sig
        {**good, "sig": ""},
        sign(receipt_fields(), secret="someone-else", method="sha1"),   # wrong key
        sign(receipt_fields(), method="md5hash"),                       # not the configured method
    ]
    for fields in forgeries:
        with pytest.raises(CallbackRefused):
            provider.parse_status_callback(SHAPES[shape](STATUS_URL, fields))


@pytest.mark.parametrize("age", [26 * 3600, -3600])
def test_a_signature_too_old_or_from_the_future_is_refused(signed, age):
    fields = sign(receipt_fields(), timestamp=int(time.time()) - age)
    with pytest.raises(CallbackRefused, match="too old"):
        signed.parse_status_callback(as_form(STATUS_URL, fields))


def test_a_signature_of_a_day_ago_is_kept_for_vonage_resends(signed):
    fields = sign(receipt_fields(), timestamp=int(time.time()) - 23 * 3600)
    assert signed.parse_status_callback(as_form(STATUS_URL, fields))[0].status == "delivered"


def test_a_signed_receipt_without_a_timestamp_is_refused(signed):
    fields = receipt_fields()
    fields["sig"] = signature.compute(fields, SIGNATURE_SECRET, "md5hash")
    with pytest.raises(CallbackRefused):
        signed.parse_status_callback(as_form(STATUS_URL, fields))


def test_a_receipt_for_another_api_key_is_refused(signed, unsigned):
    with pytest.raises(CallbackRefused, match="another Vonage API key"):
        signed.parse_status_callback(as_form(STATUS_URL, sign(receipt_fields(**{"api-key": "zzz"}))))
    with pytest.raises(CallbackRefused, match="another Vonage API key"):
        unsigned.parse_status_callback(as_form(STATUS_URL, receipt_fields(**{"api-key": "zzz"})))


@pytest.mark.parametrize("shape", SHAPES)
def test_the_token_path_reads_each_shape_and_ignores_the_token(unsigned, shape):
    url = STATUS_URL + "?token=abc"
    [update] = unsigned.parse_status_callback(SHAPES[shape](url, receipt_fields(status="expired", err="5")))
    assert (update.status, update.provider_status, update.error_code) == ("undelivered", "expired", "5")


@pytest.mark.parametrize(("word", "status"), [
    ("delivered", "delivered"), ("expired", "undelivered"), ("failed", "undelivered"), ("rejected", "failed"),
    ("accepted", "sent"), ("buffered", "sent"), ("unknown", "sent"), ("DELIVERED", "delivered"), ("new-word", "sent"),
])
def test_status_mapping(unsigned, word, status):
    [update] = unsigned.parse_status_callback(as_form(STATUS_URL, receipt_fields(status=word)))
    assert update.status == status
    assert update.provider_status == word.lower()


def test_err_code_9_is_an_opt_out_of_the_receiver(unsigned):
    [update] = unsigned.parse_status_callback(as_form(STATUS_URL, receipt_fields(status="rejected", err="9")))
    assert (update.opted_out, update.error_code, update.receiver) == (True, "9", "+447700900000")
    [other] = unsigned.parse_status_callback(as_form(STATUS_URL, receipt_fields(status="failed", err="6")))
    assert other.opted_out is False


def test_a_receipt_without_id_or_status_is_unreadable(unsigned):
    fields = receipt_fields()
    for name in ("messageId", "status"):
        with pytest.raises(ValueError):
            unsigned.parse_status_callback(as_form(STATUS_URL, {k: v for k, v in fields.items() if k != name}))
    with pytest.raises(ValueError):
        unsigned.parse_status_callback(CallbackRequest(url=STATUS_URL, headers={}, body=b"\x00junk"))


def test_a_receipt_without_a_price_has_none(unsigned):
    fields = {k: v for k, v in receipt_fields().items() if k != "price"}
    [update] = unsigned.parse_status_callback(as_get(STATUS_URL, fields))
    assert (update.price, update.price_unit) == (None, None)


# -- inbound --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", signature.METHODS)
def test_a_signed_inbound_stop_in_each_shape_and_method(make_provider, shape, method):
    provider = make_provider(STATUS_URL, VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET, VONAGE_SIGNATURE_METHOD=method)
    [message] = provider.parse_inbound(SHAPES[shape](INBOUND_URL, sign(inbound_fields(), method=method)))
    assert (message.sender, message.body, message.opt_out_type) == ("+447700900001", "STOP", None)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_forged_inbound_is_refused(signed, shape):
    good = sign(inbound_fields(text="START"))
    for fields in ({**good, "text": "STOP"}, {k: v for k, v in good.items() if k != "sig"},
                   sign(inbound_fields(), secret="nope")):
        with pytest.raises(CallbackRefused):
            signed.parse_inbound(SHAPES[shape](INBOUND_URL, fields))


def test_inbound_on_the_token_path(unsigned):
    [message] = unsigned.parse_inbound(as_get(INBOUND_URL + "?token=abc", inbound_fields(text="Start")))
    assert (message.sender, message.body) == ("+447700900001", "Start")


def test_parts_of_long_and_binary_messages_are_no_reply(unsigned):
    concat = inbound_fields(text="STOP", concat="true", **{"concat-ref": "1", "concat-total": "2", "concat-part": "1"})
    assert unsigned.parse_inbound(as_form(INBOUND_URL, concat)) == []
    assert unsigned.parse_inbound(as_json(INBOUND_URL, inbound_fields(text="STOP", type="binary"))) == []


def test_inbound_without_a_number_is_unreadable(unsigned):
    with pytest.raises(ValueError):
        unsigned.parse_inbound(as_form(INBOUND_URL, inbound_fields(sender="not-a-number")))
