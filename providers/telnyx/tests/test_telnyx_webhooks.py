"""Telnyx webhooks: the Ed25519 signature and its 300 s window first, then statuses, opt-outs and inbound."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from telnyx_fakes import CALLBACK, INBOUND, MESSAGE_ID, OTHER_KEY, PUBLIC_KEY, event, message_object, signed

from sms_service.exceptions import CallbackRefused
from sms_service.provider import CallbackRequest, InboundMessage, StatusUpdate
from sms_service_telnyx import signature
from sms_service_telnyx.provider import STATUS_MAP, TelnyxProvider


def test_the_signature_module_against_a_key_pair_made_here():
    private = Ed25519PrivateKey.generate()
    public = signature.load_public_key(base64.b64encode(private.public_key().public_bytes_raw()).decode())
    body, stamp = b'{"data":{}}', str(int(time.time()))
    good = base64.b64encode(private.sign(f"{stamp}|".encode() + body)).decode()
    assert signature.problem(public, body, good, stamp) is None
    assert "does not match" in signature.problem(public, body + b" ", good, stamp)
    assert "does not match" in signature.problem(public, body, good, str(int(stamp) + 1))
    assert "more than 300 s" in signature.problem(public, body, good, stamp, now=int(stamp) + 301)
    assert signature.problem(public, body, good, stamp, now=int(stamp) + 300) is None
    assert signature.problem(public, body, good, stamp, now=int(stamp) - 300) is None
    assert "more than 300 s" in signature.problem(public, body, good, stamp, now=int(stamp) - 301)


@pytest.mark.parametrize(("word", "status"), [
    ("queued", "queued"), ("sending", "sent"), ("sent", "sent"), ("delivered", "delivered"),
    ("delivery_failed", "undelivered"), ("expired", "undelivered"), ("sending_failed", "failed"),
    ("delivery_unconfirmed", "sent"), ("something_new", "sent"),
])
def test_status_table(provider, word, status):
    kind = "message.finalized" if STATUS_MAP.get(word) != "queued" else "message.sent"
    [update] = provider.parse_status_callback(signed(CALLBACK, event(kind, message_object(word))))
    assert (update.sid, update.status, update.provider_status) == (MESSAGE_ID, status, word)


def test_a_finalized_delivery_carries_receiver_and_cost(provider):
    payload = message_object("delivered", cost={"amount": "0.0051", "currency": "USD"})
    [update] = provider.parse_status_callback(signed(CALLBACK, event("message.finalized", payload)))
    assert update == StatusUpdate(sid=MESSAGE_ID, status="delivered", provider_status="delivered",
                                  receiver="+14155550123", price="0.0051", price_unit="USD")


@pytest.mark.parametrize(("code", "status", "opted_out"), [
    ("40300", "sending_failed", True), ("40001", "sending_failed", False), ("40002", "delivery_failed", False),
    ("40003", "delivery_failed", False), ("40005", "expired", False), ("40008", "delivery_failed", False),
])
def test_delivery_error_codes(provider, code, status, opted_out):
    payload = message_object(status, errors=[{"code": code, "title": "x", "detail": "y"}])
    [update] = provider.parse_status_callback(signed(CALLBACK, event("message.finalized", payload)))
    assert (update.error_code, update.opted_out, update.receiver) == (code, opted_out, "+14155550123")


def test_an_inbound_event_on_the_status_route_gives_nothing(provider):
    payload = message_object("webhook_delivered", direction="inbound")
    assert provider.parse_status_callback(signed(CALLBACK, event("message.received", payload))) == []


def test_inbound_stop(provider):
    payload = {**message_object("webhook_delivered", direction="inbound", text="STOP"),
               "from": {"phone_number": "+14155550123", "carrier": "T-Mobile"}}
    assert provider.parse_inbound(signed(INBOUND, event("message.received", payload))) == \
        [InboundMessage(sender="+14155550123", body="STOP")]


def test_status_events_posted_to_the_inbound_route_give_nothing(provider):
    assert provider.parse_inbound(signed(INBOUND, event("message.finalized", message_object("delivered")))) == []


@pytest.mark.parametrize("spoil", ["other_key", "tampered_body", "expired", "future", "missing_signature",
                                   "missing_timestamp", "not_base64", "short", "changed_timestamp"])
@pytest.mark.parametrize("route", ["status", "inbound"])
def test_tampered_expired_or_missing_signatures_are_refused(provider, spoil, route):
    body = event("message.finalized" if route == "status" else "message.received", message_object("delivered"))
    good = signed(CALLBACK, body)
    headers = dict(good.headers)
    raw = good.body
    if spoil == "other_key":
        headers = dict(signed(CALLBACK, body, key=OTHER_KEY).headers)
    elif spoil == "tampered_body":
        raw = raw.replace(b"delivered", b"delivery_failed")
    elif spoil == "expired":
        headers = dict(signed(CALLBACK, body, timestamp=int(time.time()) - 301).headers)
    elif spoil == "future":
        headers = dict(signed(CALLBACK, body, timestamp=int(time.time()) + 400).headers)
    elif spoil == "missing_signature":
        del headers["telnyx-signature-ed25519"]
    elif spoil == "missing_timestamp":
        del headers["telnyx-timestamp"]
    elif spoil == "not_base64":
        headers["telnyx-signature-ed25519"] = "!!!!"
    elif spoil == "short":
        headers["telnyx-signature-ed25519"] = base64.b64encode(b"x" * 32).decode()
    else:
        headers["telnyx-timestamp"] = str(int(headers["telnyx-timestamp"]) - 1)
    request = CallbackRequest(url=CALLBACK, headers=headers, body=raw, json=good.json)
    parse = provider.parse_status_callback if route == "status" else provider.parse_inbound
    with pytest.raises(CallbackRefused):
        parse(request)


def test_signed_but_unreadable_webhooks(provider):
    for body in (b"not json", b"[1, 2]", b'{"data": {"event_type": "message.sent"}}'):
        with pytest.raises(ValueError):
            provider.parse_status_callback(signed(CALLBACK, body))
    no_status = message_object("delivered")
    no_status["to"] = []
    with pytest.raises(ValueError):
        provider.parse_status_callback(signed(CALLBACK, event("message.finalized", no_status)))
    with pytest.raises(ValueError):
        provider.parse_inbound(signed(INBOUND, event("message.received", {**message_object(), "from": {}})))


def test_without_a_public_key_every_webhook_is_refused(env):
    provider = TelnyxProvider({k: v for k, v in env.items() if k != "TELNYX_PUBLIC_KEY"}, timeout=5)
    with pytest.raises(CallbackRefused):
        provider.parse_status_callback(signed(CALLBACK, event("message.finalized", message_object("delivered"))))
    provider.close()


def test_public_key_fixture_is_the_signing_key():
    assert signature.load_public_key(PUBLIC_KEY) is not None
