"""TwilioProvider.balance: reading Balance.json, including negative and malformed answers."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from responses import matchers
from twilio_fakes import ACCOUNT_SID, BALANCE_URL, KEY_AUTH, TOKEN_AUTH, error_body

from sms_service.exceptions import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from sms_service.provider import Balance
from sms_service_twilio.provider import TwilioProvider


def expect_balance(http, *, authorization=TOKEN_AUTH, **answer):
    """Register the one GET Twilio must receive, with its credentials and no body."""
    http.get(
        BALANCE_URL,
        match=[
            matchers.header_matcher({"Authorization": authorization, "Accept": "application/json"}),
            matchers.query_string_matcher(""),
        ],
        **answer,
    )


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        ("0.05", Decimal("0.05")),
        ("1234.5678", Decimal("1234.5678")),
        ("0", Decimal(0)),
        ("0.00", Decimal(0)),
        ("-1.50", Decimal("-1.50")),
        (" 3.1 ", Decimal("3.1")),
        (7, Decimal(7)),
        (-2.5, Decimal("-2.5")),
    ],
)
def test_balance(provider, http, balance, expected):
    expect_balance(http, json={"account_sid": ACCOUNT_SID, "balance": balance,
                               "currency": "USD", "extra": True})
    assert provider.balance() == Balance(amount=expected, currency="USD")


def test_balance_with_an_api_key_pair(key_env, http):
    provider = TwilioProvider(key_env, timeout=5)
    expect_balance(http, authorization=KEY_AUTH,
                   json={"account_sid": ACCOUNT_SID, "balance": "-0.10", "currency": "EUR"})
    assert provider.balance() == Balance(amount=Decimal("-0.10"), currency="EUR")
    provider.close()


def test_missing_currency_is_tolerated(provider, http):
    expect_balance(http, json={"account_sid": ACCOUNT_SID, "balance": "2"})
    assert provider.balance() == Balance(amount=Decimal(2), currency="")


@pytest.mark.parametrize(
    "answer",
    [
        {"json": {"account_sid": ACCOUNT_SID, "currency": "USD"}},
        {"json": {"balance": None, "currency": "USD"}},
        {"json": {"balance": "", "currency": "USD"}},
        {"json": {"balance": "abc", "currency": "USD"}},
        {"json": {"balance": "1,50", "currency": "USD"}},
        {"json": {"balance": "NaN", "currency": "USD"}},
        {"json": {"balance": "-Infinity", "currency": "USD"}},
        {"json": {"balance": True, "currency": "USD"}},
        {"json": {"balance": ["1"], "currency": "USD"}},
        {"json": ["0.05"]},
        {"body": "<html>balance</html>"},
        {"body": ""},
    ],
)
def test_malformed_balance_is_unavailable(provider, http, answer):
    expect_balance(http, **answer)
    with pytest.raises(ProviderUnavailable):
        provider.balance()


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ProviderAuthError), (403, ProviderAuthError), (429, ProviderRateLimited),
     (500, ProviderUnavailable), (503, ProviderUnavailable)],
)
def test_balance_errors(provider, http, status, error):
    expect_balance(http, status=status, json=error_body(20003, "Authenticate", status))
    with pytest.raises(error):
        provider.balance()


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.exceptions.ConnectionError("refused"), ProviderUnavailable),
        (requests.exceptions.ReadTimeout("read timed out"), ProviderTimeout),
    ],
)
def test_balance_transport_failures(provider, http, failure, error):
    expect_balance(http, body=failure)
    with pytest.raises(error):
        provider.balance()
