"""Twilio's status lookup (plugin API 1.2 `fetch_status`) and its prices: send answer, callback, lookup."""

from __future__ import annotations

import pytest
from responses import matchers
from test_twilio_send import CREATED, SID, expect_send
from test_twilio_status import CALLBACK, form_callback
from twilio_fakes import ACCOUNT_SID, BASE, TOKEN_AUTH, error_body

from sms_service.exceptions import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from sms_service_twilio.provider import TwilioProvider

MESSAGE_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json"


@pytest.fixture
def callback_provider(token_env):
    p = TwilioProvider(token_env, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


def _lookup_answer(**fields):
    return {**CREATED, "status": "delivered", "date_sent": "Thu, 24 Aug 2023 05:01:47 +0000",
            "price": "-0.00750", "price_unit": "USD", **fields}


def test_twilio_can_look_messages_up():
    assert TwilioProvider.supports_fetch_status()


def test_lookup_reads_status_error_code_and_price_without_its_sign(provider, http):
    http.get(MESSAGE_URL, json=_lookup_answer(), match=[matchers.header_matcher({"Authorization": TOKEN_AUTH})])
    update = provider.fetch_status(SID)
    assert (update.sid, update.status, update.provider_status) == (SID, "delivered", "delivered")
    assert update.error_code is None
    assert (update.price, update.price_unit) == ("0.00750", "USD")


def test_lookup_of_an_undelivered_message_with_its_error_code(provider, http):
    http.get(MESSAGE_URL, json=_lookup_answer(status="undelivered", error_code=30003, price=None))
    update = provider.fetch_status(SID)
    assert (update.status, update.error_code) == ("undelivered", "30003")
    assert (update.price, update.price_unit) == (None, None)  # not known yet


def test_lookup_of_a_message_twilio_does_not_know(provider, http):
    http.get(MESSAGE_URL, status=404, json=error_body(20404, "The requested resource was not found", 404))
    with pytest.raises(LookupError):
        provider.fetch_status(SID)


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (400, 20429)])
def test_a_throttled_lookup_is_rate_limited(provider, http, status, code):
    http.get(MESSAGE_URL, status=status, json=error_body(code, "Too Many Requests", status),
             headers={"Retry-After": "3"})
    with pytest.raises(ProviderRateLimited):
        provider.fetch_status(SID)


def test_other_lookup_failures(provider, http):
    http.get(MESSAGE_URL, status=401, json=error_body(20003, "Authenticate", 401))
    with pytest.raises(ProviderAuthError):
        provider.fetch_status(SID)
    http.get(MESSAGE_URL, status=200, json={"sid": SID})
    with pytest.raises(ProviderUnavailable):
        provider.fetch_status(SID)


def test_a_sid_that_is_no_sid_is_never_put_in_a_url(provider):
    with pytest.raises(LookupError):
        provider.fetch_status("../Balance")


def test_the_send_answer_brings_its_price_when_twilio_gives_one(provider, http, message):
    expect_send(http, message, json={**CREATED, "price": "-0.0079", "price_unit": "usd"})
    receipt = provider.send(message)
    assert (receipt.price, receipt.price_unit) == ("0.0079", "USD")


def test_the_send_answer_without_a_price(provider, http, message):
    expect_send(http, message, json=CREATED)  # "price": null, as Twilio answers at first
    receipt = provider.send(message)
    assert (receipt.price, receipt.price_unit) == (None, None)


def test_a_callback_brings_its_price_when_present(callback_provider):
    fields = {"MessageSid": SID, "AccountSid": ACCOUNT_SID, "MessageStatus": "delivered",
              "To": "+15558675310", "Price": "-0.00750", "PriceUnit": "USD"}
    (update,) = callback_provider.parse_status_callback(form_callback(fields))
    assert (update.status, update.price, update.price_unit) == ("delivered", "0.00750", "USD")
    del fields["Price"]
    (update,) = callback_provider.parse_status_callback(form_callback(fields))
    assert update.price is None
