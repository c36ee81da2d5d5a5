"""Twilio inbound messages (the number's messaging webhook): signature, From, Body, OptOutType."""

from __future__ import annotations

import pytest
from twilio_fakes import ACCOUNT_SID, AUTH_TOKEN

from sms_service.exceptions import CallbackRefused
from sms_service.provider import CallbackRequest, InboundMessage
from sms_service_twilio import signature
from sms_service_twilio.provider import TwilioProvider

INBOUND = "https://sms.example.com/callbacks/twilio/inbound"


@pytest.fixture
def provider(token_env):
    p = TwilioProvider(token_env, timeout=5, callback_url="https://sms.example.com/callbacks/twilio/status")
    yield p
    p.close()


def inbound(fields: dict[str, str], token: str = AUTH_TOKEN, sign_url: str = INBOUND) -> CallbackRequest:
    form = {name: (value,) for name, value in fields.items()}
    return CallbackRequest(url=INBOUND, headers={"x-twilio-signature": signature.compute(token, sign_url, form)},
                           body=b"<form>", form=form)


def fields(body: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": "SM" + "cd34" * 8, "AccountSid": ACCOUNT_SID, "From": "+15558675310",
            "To": "+15005550006", "Body": body, "NumSegments": "1", **extra}


def test_a_signed_reply_is_read(provider):
    assert provider.parse_inbound(inbound(fields("STOP"))) == [
        InboundMessage(sender="+15558675310", body="STOP", opt_out_type=None)]
    (message,) = provider.parse_inbound(inbound(fields("no thanks", OptOutType="STOP")))
    assert message.opt_out_type == "STOP" and message.body == "no thanks"
    assert "+15558675310" not in repr(message) and "no thanks" not in repr(message)


@pytest.mark.parametrize("request_of", [
    lambda f: inbound(f, token="x" * 32),
    lambda f: inbound(f, sign_url="https://sms.example.com/callbacks/twilio/status"),
    lambda f: inbound({**f, "AccountSid": "AC" + "0" * 32}),
    lambda f: CallbackRequest(url=INBOUND, headers={}, body=b"", form={k: (v,) for k, v in f.items()}),
])
def test_forged_replies_are_refused(provider, request_of):
    with pytest.raises(CallbackRefused):
        provider.parse_inbound(request_of(fields("STOP")))


def test_a_signed_reply_without_a_sender_is_unreadable(provider):
    with pytest.raises(ValueError):
        provider.parse_inbound(inbound({k: v for k, v in fields("STOP").items() if k != "From"}))


def test_the_answer_is_empty_twiml():
    assert TwilioProvider.supports_inbound() is True
    assert TwilioProvider.inbound_answer == ("text/xml", b"<Response/>")
