"""TelnyxProvider.balance (/v2/balance) and fetch_status (GET /v2/messages/{id}, plugin API 1.2)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from responses import matchers
from telnyx_fakes import BALANCE_URL, BEARER, MESSAGE_ID, MESSAGES_URL, answer, error_body, message_object

from sms_service.exceptions import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from sms_service.provider import StatusUpdate

AUTH = [matchers.header_matcher({"Authorization": BEARER})]
BALANCE = {"data": {"record_type": "balance", "balance": "300.00", "credit_limit": "100.00",
                    "available_credit": "400.00", "currency": "USD", "pending": "10.00"}}


def test_balance_is_the_available_credit(provider, http):
    http.get(BALANCE_URL, match=AUTH, json=BALANCE)
    balance = provider.balance()
    assert (balance.amount, balance.currency) == (Decimal("400.00"), "USD")


@pytest.mark.parametrize(("data", "expected"), [
    ({"balance": "-2.50", "currency": "EUR"}, Decimal("-2.50")),
    ({"balance": "5", "available_credit": None, "currency": "USD"}, Decimal(5)),
    ({"balance": "5", "available_credit": "0.00", "currency": "USD"}, Decimal(0)),
])
def test_balance_falls_back_to_balance(provider, http, data, expected):
    http.get(BALANCE_URL, json={"data": data})
    assert provider.balance().amount == expected


@pytest.mark.parametrize("body", [{"data": {"balance": "lots"}}, {"data": {}}, {"balance": "1"}, {"data": "1"}])
def test_balance_unreadable(provider, http, body):
    http.get(BALANCE_URL, json=body)
    with pytest.raises(ProviderUnavailable):
        provider.balance()


@pytest.mark.parametrize(("status", "body", "error"), [
    (401, error_body("10009", "Authentication failed"), ProviderAuthError),
    (429, error_body("10011", "Too many requests"), ProviderRateLimited),
    (400, error_body("10015", "Bad request"), ProviderUnavailable),
    (500, error_body("10007", "Unexpected error"), ProviderUnavailable),
])
def test_balance_errors(provider, http, status, body, error):
    http.get(BALANCE_URL, status=status, json=body)
    with pytest.raises(error) as caught:
        provider.balance()
    assert type(caught.value) is error


def test_fetch_status_reads_status_error_and_cost(provider, http):
    record = message_object("delivered", cost={"amount": "0.0051", "currency": "USD"})
    http.get(f"{MESSAGES_URL}/{MESSAGE_ID}", match=AUTH, json=answer(record))
    assert provider.supports_fetch_status()
    assert provider.fetch_status(MESSAGE_ID) == StatusUpdate(
        sid=MESSAGE_ID, status="delivered", provider_status="delivered", receiver="+14155550123",
        price="0.0051", price_unit="USD")


def test_fetch_status_of_a_stop_blocked_message_says_opted_out(provider, http):
    record = message_object("sending_failed", errors=[{"code": "40300", "title": "Blocked due to STOP message"}])
    http.get(f"{MESSAGES_URL}/{MESSAGE_ID}", json=answer(record))
    update = provider.fetch_status(MESSAGE_ID)
    assert (update.status, update.error_code, update.opted_out) == ("failed", "40300", True)


def test_fetch_status_unknown_and_failures(provider, http):
    http.get(f"{MESSAGES_URL}/nope", status=404, json=error_body("10005", "Resource not found"))
    http.get(f"{MESSAGES_URL}/busy", status=429, json=error_body("10011", "Too many requests"))
    http.get(f"{MESSAGES_URL}/odd", json=answer({**message_object(), "to": []}))
    http.get(f"{MESSAGES_URL}/a%2Fb", status=404, json=error_body("10005", "Resource not found"))
    with pytest.raises(LookupError):
        provider.fetch_status("nope")
    with pytest.raises(ProviderRateLimited):
        provider.fetch_status("busy")
    with pytest.raises(ProviderUnavailable):
        provider.fetch_status("odd")
    with pytest.raises(LookupError):
        provider.fetch_status("a/b")
