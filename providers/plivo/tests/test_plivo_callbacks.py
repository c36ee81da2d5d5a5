"""Plivo status callbacks and inbound messages through the provider: signature first, then the table."""

from __future__ import annotations

import pytest
from plivo_fakes import AUTH_TOKEN, CALLBACK, INBOUND, MESSAGE_UUID, signed, status_form

from sms_service.exceptions import CallbackRefused
from sms_service.provider import CallbackRequest, InboundMessage, StatusUpdate
from sms_service_plivo.provider import STATUS_MAP


@pytest.mark.parametrize(("word", "status"), [
    ("queued", "queued"), ("sent", "sent"), ("delivered", "delivered"), ("undelivered", "undelivered"),
    ("failed", "failed"), ("rejected", "failed"), ("read", "delivered"), ("Delivered", "delivered"),
    ("something_new", "sent"),
])
def test_status_table(provider, word, status):
    updates = provider.parse_status_callback(signed(CALLBACK, status_form(word)))
    assert [(u.sid, u.status, u.provider_status) for u in updates] == [(MESSAGE_UUID, status, word)]


def test_every_documented_state_is_in_the_table():
    assert {"queued", "sent", "failed", "delivered", "undelivered"} <= set(STATUS_MAP)


def test_a_delivered_report_carries_receiver_and_price(provider):
    [update] = provider.parse_status_callback(signed(CALLBACK, status_form("delivered", ErrorCode="000")))
    assert update == StatusUpdate(sid=MESSAGE_UUID, status="delivered", provider_status="delivered",
                                  error_code=None, receiver="+14155550123", price="0.00650", price_unit="USD")


def test_error_code_200_means_the_receiver_opted_out(provider):
    form = status_form("failed", ErrorCode="200", TotalAmount="0.00000")
    [update] = provider.parse_status_callback(signed(CALLBACK, form))
    assert (update.status, update.error_code, update.opted_out, update.receiver) == \
        ("failed", "200", True, "+14155550123")
    assert update.price is None  # not charged


@pytest.mark.parametrize("code", ["10", "20", "30", "40", "50", "900"])
def test_other_error_codes_are_kept_and_are_no_opt_out(provider, code):
    [update] = provider.parse_status_callback(signed(CALLBACK, status_form("undelivered", ErrorCode=code)))
    assert update.error_code == code and not update.opted_out


def test_an_inbound_state_gives_no_update(provider):
    assert provider.parse_status_callback(signed(CALLBACK, status_form("received"))) == []


def test_a_callback_url_with_a_query_is_signed_with_it(provider):
    url = CALLBACK + "?b=2&a=1"
    assert provider.parse_status_callback(signed(url, status_form("sent")))[0].status == "sent"


@pytest.mark.parametrize("spoil", ["token", "field", "nonce", "missing", "url"])
def test_forged_callbacks_are_refused(provider, spoil):
    form = status_form("delivered")
    if spoil == "token":
        request = signed(CALLBACK, form, token="x" * 32)
    elif spoil == "field":
        good = signed(CALLBACK, form)
        request = CallbackRequest(url=CALLBACK, headers=good.headers, body=b"",
                                  form={**good.form, "Status": ("failed",)})
    elif spoil == "nonce":
        good = signed(CALLBACK, form)
        request = CallbackRequest(url=CALLBACK, headers={**good.headers, "x-plivo-signature-v3-nonce": "1"},
                                  body=b"", form=good.form)
    elif spoil == "missing":
        request = CallbackRequest(url=CALLBACK, headers={}, body=b"", form=signed(CALLBACK, form).form)
    else:
        good = signed(CALLBACK, form)
        request = CallbackRequest(url=CALLBACK.replace("sms.", "evil."), headers=good.headers, body=b"",
                                  form=good.form)
    with pytest.raises(CallbackRefused):
        provider.parse_status_callback(request)


def test_a_signed_callback_without_uuid_or_status_is_unreadable(provider):
    form = {k: v for k, v in status_form("sent").items() if k != "MessageUUID"}
    with pytest.raises(ValueError):
        provider.parse_status_callback(signed(CALLBACK, form))


def test_inbound_stop_names_the_sender_in_e164(provider):
    form = {"From": ["14155550123"], "To": ["14156667777"], "Text": ["STOP"], "Type": ["sms"],
            "MessageUUID": ["0936ec98-7c4c-11e4-9bd8-22000afa12b9"]}
    assert provider.parse_inbound(signed(INBOUND, form)) == [InboundMessage(sender="+14155550123", body="STOP")]


def test_inbound_with_non_ascii_text_is_verified(provider):
    form = {"From": ["33612345678"], "To": ["14156667777"], "Text": ["Arrêt 🙂"], "Type": ["sms"]}
    assert provider.parse_inbound(signed(INBOUND, form))[0].body == "Arrêt 🙂"


def test_inbound_forged_or_without_sender(provider):
    form = {"From": ["14155550123"], "Text": ["STOP"]}
    with pytest.raises(CallbackRefused):
        provider.parse_inbound(signed(INBOUND, form, token="not-" + AUTH_TOKEN))
    with pytest.raises(ValueError):
        provider.parse_inbound(signed(INBOUND, {"Text": ["STOP"]}))
