"""PlivoProvider.balance (cash_credits) and fetch_status (the message record, plugin API 1.2)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from plivo_fakes import ACCOUNT, ACCOUNT_URL, BASIC, MESSAGE_UUID, MESSAGES_URL, RECORD, error_body
from responses import matchers

from sms_service.exceptions import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from sms_service.provider import StatusUpdate

AUTH = [matchers.header_matcher({"Authorization": BASIC})]
RECORD_URL = f"{MESSAGES_URL}{MESSAGE_UUID}/"


@pytest.mark.parametrize(("credits", "expected"), [
    ("24.93500", Decimal("24.93500")), ("0.00000", Decimal("0")), ("-1.5", Decimal("-1.5")), (3, Decimal(3)),
])
def test_balance_reads_cash_credits_in_dollars(provider, http, credits, expected):
    http.get(ACCOUNT_URL, match=AUTH, json={**ACCOUNT, "cash_credits": credits})
    balance = provider.balance()
    assert balance.amount == expected and balance.currency == "USD"


@pytest.mark.parametrize("credits", [None, "", "lots", "NaN", "Infinity", True, [1], "MISSING"])
def test_balance_without_readable_credits_is_unavailable(provider, http, credits):
    body = {**ACCOUNT, "cash_credits": credits}
    if credits == "MISSING":
        del body["cash_credits"]
    http.get(ACCOUNT_URL, json=body)
    with pytest.raises(ProviderUnavailable, match="cash_credits"):
        provider.balance()


@pytest.mark.parametrize(("status", "error"), [
    (401, ProviderAuthError), (403, ProviderAuthError), (429, ProviderRateLimited), (400, ProviderUnavailable),
    (404, ProviderUnavailable), (500, ProviderUnavailable),
])
def test_balance_errors(provider, http, status, error):
    http.get(ACCOUNT_URL, status=status, json=error_body("no"))
    with pytest.raises(error) as caught:
        provider.balance()
    assert type(caught.value) is error


def test_fetch_status_reads_state_error_code_and_amount(provider, http):
    http.get(RECORD_URL, match=AUTH, json=RECORD)
    assert provider.supports_fetch_status()
    update = provider.fetch_status(MESSAGE_UUID)
    assert update == StatusUpdate(sid=MESSAGE_UUID, status="delivered", provider_status="delivered",
                                  error_code=None, receiver="+14155550123", price="0.00650", price_unit="USD")


@pytest.mark.parametrize(("state", "code", "amount", "status", "error_code", "opted_out", "price"), [
    ("queued", "000", "0.00000", "queued", None, False, None),
    ("sent", "", "0.00650", "sent", None, False, "0.00650"),
    ("failed", "200", "0.00000", "failed", "200", True, None),
    ("undelivered", "50", "-0.00650", "undelivered", "50", False, "0.00650"),
    ("failed", "900", None, "failed", "900", False, None),
    ("rejected", "30", "0", "failed", "30", False, None),
])
def test_fetch_status_table(provider, http, state, code, amount, status, error_code, opted_out, price):
    http.get(RECORD_URL, json={**RECORD, "message_state": state, "error_code": code, "total_amount": amount})
    update = provider.fetch_status(MESSAGE_UUID)
    assert (update.status, update.provider_status, update.error_code) == (status, state, error_code)
    assert update.opted_out is opted_out
    assert (update.price, update.price_unit) == (price, "USD" if price else None)


def test_fetch_status_of_an_unknown_message_is_a_lookup_error(provider, http):
    http.get(RECORD_URL, status=404, json=error_body("not found"))
    with pytest.raises(LookupError):
        provider.fetch_status(MESSAGE_UUID)


def test_fetch_status_quotes_the_id_into_one_path_segment(provider, http):
    http.get(f"{MESSAGES_URL}..%2F..%2Fx/", status=404, json=error_body("not found"))
    with pytest.raises(LookupError):
        provider.fetch_status("../../x")


@pytest.mark.parametrize(("status", "body", "error"), [
    (429, error_body("too many requests"), ProviderRateLimited),
    (401, error_body("authentication failed"), ProviderAuthError),
    (500, error_body("internal error"), ProviderUnavailable),
    (200, {**RECORD, "message_state": None}, ProviderUnavailable),
    (200, "not json", ProviderUnavailable),
])
def test_fetch_status_failures(provider, http, status, body, error):
    http.get(RECORD_URL, status=status, **({"json": body} if isinstance(body, dict) else {"body": body}))
    with pytest.raises(error):
        provider.fetch_status(MESSAGE_UUID)
