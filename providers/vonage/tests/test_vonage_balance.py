"""VonageProvider.balance: GET /account/get-balance with Basic auth."""

from __future__ import annotations

from decimal import Decimal

import pytest
import responses
from responses import matchers
from vonage_fakes import BALANCE_URL, BASIC

from sms_service.exceptions import ProviderAuthError, ProviderRateLimited, ProviderUnavailable


def expect_balance(http, status=200, **kwargs):
    http.add(responses.GET, BALANCE_URL, status=status, match=[matchers.header_matcher({"Authorization": BASIC})],
             **kwargs)


@pytest.mark.parametrize(("value", "amount"), [(3.14159, Decimal("3.14159")), (0, Decimal("0")),
                                               (-1.5, Decimal("-1.5")), ("29.18202293", Decimal("29.18202293"))])
def test_balance_reads_value_in_the_configured_currency(make_provider, http, value, amount):
    expect_balance(http, json={"value": value, "autoReload": False})
    balance = make_provider().balance()
    assert (balance.amount, balance.currency) == (amount, "EUR")


def test_the_currency_is_the_accounts(make_provider, http):
    expect_balance(http, json={"value": 1, "autoReload": True})
    assert make_provider(VONAGE_CURRENCY="GBP").balance().currency == "GBP"


@pytest.mark.parametrize(("status", "cls"), [(401, ProviderAuthError), (403, ProviderAuthError),
                                             (429, ProviderRateLimited), (500, ProviderUnavailable),
                                             (404, ProviderUnavailable), (400, ProviderUnavailable)])
def test_balance_errors(make_provider, http, status, cls):
    expect_balance(http, status=status, json={"error-code": "401", "error-code-label": "authentication failed"})
    with pytest.raises(cls):
        make_provider().balance()


@pytest.mark.parametrize("body", [b"nope", b"[]", b"{}", b'{"value": "NaN"}', b'{"value": true}', b'{"value": null}'])
def test_unreadable_balance_is_unavailable(make_provider, http, body):
    expect_balance(http, body=body)
    with pytest.raises(ProviderUnavailable):
        make_provider().balance()
