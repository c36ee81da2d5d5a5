"""Tests of the Kaleyra provider against a strict HTTP fake: config, send, errors, balance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from importlib.metadata import entry_points

import pytest
import requests
import responses
from responses import matchers

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from sms_service.provider import ENTRY_POINT_GROUP, Balance, Message, Provider
from sms_service_kaleyra.provider import KaleyraProvider

API_KEY = "A0123456789abcdef0123456789abcdef"
SID = "HXAP1649996084IN"
BASE = "https://api.kaleyra.io"
MESSAGES_URL = f"{BASE}/v1/{SID}/messages"
BALANCE_URL = f"{BASE}/api/v1/{SID}/billing"
MESSAGE = Message(
    sender="KLRHXA",
    receiver="+917499623342",
    body="Your code is 123456",
    num_segments=1,
    encoding="GSM-7",
)
FORM = {"to": "+917499623342", "sender": "KLRHXA", "body": "Your code is 123456"}
SUCCESS = {
    "id": "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10",
    "sender": "KLRHXA",
    "type": "OTP",
    "body": "Your code is 123456",
    "createdDateTime": "2022-11-23 15:10:53+00:00",
    "totalCount": 1,
    "data": [{"message_id": "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10:1", "recipient": "917499623342"}],
    "error": {},
}


@pytest.fixture
def env() -> dict[str, str]:
    """The smallest valid Kaleyra configuration."""
    return {"KALEYRA_API_KEY": API_KEY, "KALEYRA_SID": SID}


@pytest.fixture
def make_provider(env):
    """Build providers from `env` plus overrides, and close them after the test."""
    built: list[KaleyraProvider] = []

    def make(**overrides: str) -> KaleyraProvider:
        provider = KaleyraProvider({**env, **overrides}, timeout=5)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


@pytest.fixture
def http():
    """Fake HTTP that fails the test on any unexpected or unmade call."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def expect_send(http, *, status=200, json_body=None, body=None, headers=None, url=MESSAGES_URL,
                form=None):
    """Register the one send call the test allows: exact URL, form fields and api-key."""
    kwargs = {"json": json_body} if json_body is not None else {"body": body if body is not None else ""}
    http.add(
        responses.POST, url, status=status, headers=headers,
        match=[
            matchers.urlencoded_params_matcher(form or FORM),
            matchers.header_matcher({"api-key": API_KEY}),
        ],
        **kwargs,
    )


def expect_balance(http, *, status=200, json_body=None, body=None, url=BALANCE_URL, headers=None):
    """Register the one balance call the test allows: exact URL and api-key."""
    kwargs = {"json": json_body} if json_body is not None else {"body": body if body is not None else ""}
    http.add(
        responses.GET, url, status=status, headers=headers,
        match=[matchers.header_matcher({"api-key": API_KEY})],
        **kwargs,
    )


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "missing", "variable"),
    [
        ({}, "KALEYRA_API_KEY", "KALEYRA_API_KEY"),
        ({"KALEYRA_API_KEY": ""}, None, "KALEYRA_API_KEY"),
        ({"KALEYRA_API_KEY": "sekrit-value\n"}, None, "KALEYRA_API_KEY"),
        ({"KALEYRA_API_KEY": "sekrit value"}, None, "KALEYRA_API_KEY"),
        ({}, "KALEYRA_SID", "KALEYRA_SID"),
        ({"KALEYRA_SID": ""}, None, "KALEYRA_SID"),
        ({"KALEYRA_SID": "HX 123"}, None, "KALEYRA_SID"),
        ({"KALEYRA_BASE_URL": "ftp://api.kaleyra.io"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "api.kaleyra.io"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "https://"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "https://api.kaleyra.io:99999"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "https://me:sekrit-pw@api.kaleyra.io"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "https://api.kaleyra.io/?x=1"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_BASE_URL": "https://api.kaleyra.io /"}, None, "KALEYRA_BASE_URL"),
        ({"KALEYRA_SMS_TYPE": "PROMO"}, None, "KALEYRA_SMS_TYPE"),
        ({"KALEYRA_SMS_TYPE": "TXND"}, None, "KALEYRA_SMS_TYPE"),
        ({"KALEYRA_BALANCE_PATH": "api/v1/{sid}/billing"}, None, "KALEYRA_BALANCE_PATH"),
        ({"KALEYRA_BALANCE_PATH": "//evil.example/x"}, None, "KALEYRA_BALANCE_PATH"),
        ({"KALEYRA_BALANCE_PATH": "/x/https://evil.example"}, None, "KALEYRA_BALANCE_PATH"),
        ({"KALEYRA_BALANCE_PATH": "/v1/{account}/billing"}, None, "KALEYRA_BALANCE_PATH"),
        ({"KALEYRA_BALANCE_PATH": "/v1/{sid}/bill ing"}, None, "KALEYRA_BALANCE_PATH"),
        ({"KALEYRA_BALANCE_FIELD": "data..balance"}, None, "KALEYRA_BALANCE_FIELD"),
        ({"KALEYRA_BALANCE_FIELD": ".balance"}, None, "KALEYRA_BALANCE_FIELD"),
        ({"KALEYRA_BALANCE_FIELD": "data.bal ance"}, None, "KALEYRA_BALANCE_FIELD"),
        ({"KALEYRA_BALANCE_CURRENCY_FIELD": "data."}, None, "KALEYRA_BALANCE_CURRENCY_FIELD"),
    ],
)
def test_bad_configuration_names_the_variable_and_hides_secrets(env, http, overrides, missing, variable):
    settings = {**env, **overrides}
    if missing:
        del settings[missing]
    with pytest.raises(ConfigError) as caught:
        KaleyraProvider(settings, timeout=5)
    text = str(caught.value)
    assert variable in text
    assert "\n" not in text
    for secret in (API_KEY, "sekrit"):
        assert secret not in text


def test_only_kaleyra_variables_are_read(env):
    class Recording(dict):
        def get(self, key, default=None):
            assert key.startswith("KALEYRA_"), key
            return super().get(key, default)

        def __getitem__(self, key):
            assert key.startswith("KALEYRA_"), key
            return super().__getitem__(key)

    KaleyraProvider(Recording({**env, "TWILIO_AUTH_TOKEN": "x"}), timeout=5).close()


@pytest.mark.parametrize(
    ("overrides", "messages_url", "balance_url", "sms_type"),
    [
        ({}, MESSAGES_URL, BALANCE_URL, None),
        ({"KALEYRA_BASE_URL": "https://api.kaleyra.io/"}, MESSAGES_URL, BALANCE_URL, None),
        ({"KALEYRA_BASE_URL": "https://api.eu.kaleyra.io"},
         f"https://api.eu.kaleyra.io/v1/{SID}/messages",
         f"https://api.eu.kaleyra.io/api/v1/{SID}/billing", None),
        ({"KALEYRA_BASE_URL": "http://127.0.0.1:8099//"},
         f"http://127.0.0.1:8099/v1/{SID}/messages",
         f"http://127.0.0.1:8099/api/v1/{SID}/billing", None),
        ({"KALEYRA_SMS_TYPE": "otp"}, MESSAGES_URL, BALANCE_URL, "OTP"),
        ({"KALEYRA_SMS_TYPE": " Txn "}, MESSAGES_URL, BALANCE_URL, "TXN"),
        ({"KALEYRA_SMS_TYPE": ""}, MESSAGES_URL, BALANCE_URL, None),
        ({"KALEYRA_BALANCE_PATH": "/v1/{sid}/billing/balance"},
         MESSAGES_URL, f"{BASE}/v1/{SID}/billing/balance", None),
        ({"KALEYRA_BALANCE_PATH": "/api/v1/billing?sid={sid}"},
         MESSAGES_URL, f"{BASE}/api/v1/billing?sid={SID}", None),
    ],
)
def test_good_configuration(make_provider, overrides, messages_url, balance_url, sms_type):
    provider = make_provider(**overrides)
    assert provider.messages_url == messages_url
    assert provider.balance_url == balance_url
    assert provider.sms_type == sms_type


def test_repr_keeps_the_api_key_out(make_provider):
    assert API_KEY not in repr(make_provider())


def test_supports_balance():
    assert KaleyraProvider.supports_balance() is True
    assert issubclass(KaleyraProvider, Provider)


def test_entry_point_resolves_to_the_provider():
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "kaleyra"]
    assert len(found) == 1
    assert found[0].load() is KaleyraProvider


# -- send: success --------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_send_success(make_provider, http, status):
    expect_send(http, status=status, json_body=SUCCESS)
    receipt = make_provider().send(MESSAGE)
    assert receipt.sid == SUCCESS["id"]
    assert receipt.status == "queued"
    assert receipt.num_segments is None
    assert receipt.date_event == dt.datetime(2022, 11, 23, 15, 10, 53, tzinfo=dt.UTC)
    assert receipt.date_event.utcoffset() == dt.timedelta(0)


def test_send_passes_the_dlt_template_id_when_the_template_has_one(make_provider, http):
    # SPEC section 16: providerIds.kaleyra of the template reach the plugin as template_ids.
    expect_send(http, json_body=SUCCESS, form={**FORM, "template_id": "1107161234567890123"})
    message = dataclasses.replace(MESSAGE, template_ids={"template_id": "1107161234567890123"})
    assert make_provider().send(message).sid == SUCCESS["id"]


@pytest.mark.parametrize("ids", [{}, {"entity-id": "1201"}, {"template_id": ""}])
def test_send_has_no_template_id_without_one(make_provider, http, ids):
    expect_send(http, json_body=SUCCESS)  # the exact form: no template_id field at all
    assert make_provider().send(dataclasses.replace(MESSAGE, template_ids=ids)).sid == SUCCESS["id"]


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2022-11-23 15:10:53+00:00", dt.datetime(2022, 11, 23, 15, 10, 53, tzinfo=dt.UTC)),
        ("2022-11-23 20:40:53+05:30", dt.datetime(2022, 11, 23, 15, 10, 53, tzinfo=dt.UTC)),
        ("2022-11-23T15:10:53Z", dt.datetime(2022, 11, 23, 15, 10, 53, tzinfo=dt.UTC)),
        ("2022-11-23 15:10:53", dt.datetime(2022, 11, 23, 15, 10, 53, tzinfo=dt.UTC)),
        (None, None),
        ("", None),
        ("yesterday", None),
        (1669216253, None),
        ("0001-01-01 00:30:00+01:00", None),  # before year 1 in UTC: OverflowError
        ("9999-12-31 23:30:00-01:00", None),  # after year 9999 in UTC: OverflowError
        ("0100-01-01 00:00:00+00:00", None),  # a placeholder, not a time
        ("1969-12-31 23:59:59+00:00", None),
        ("\u0662\u0660\u0662\u0662-11-23 15:10:53+00:00", None),
        ("9999-12-31 23:59:59+00:00", dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
        ("1970-01-01 00:00:00+00:00", dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_send_reads_created_date_time(make_provider, http, created, expected):
    answer = {**SUCCESS, "createdDateTime": created}
    expect_send(http, json_body=answer)
    before = dt.datetime.now(dt.UTC)
    receipt = make_provider().send(MESSAGE)
    after = dt.datetime.now(dt.UTC)
    assert receipt.date_event.utcoffset() == dt.timedelta(0)
    if expected is None:
        assert before <= receipt.date_event <= after
    else:
        assert receipt.date_event == expected


def test_send_falls_back_to_the_first_message_id(make_provider, http):
    answer = {key: value for key, value in SUCCESS.items() if key != "id"}
    expect_send(http, json_body=answer)
    # The recipient's part suffix goes: reports are matched under the message's id (issue 22).
    assert make_provider().send(MESSAGE).sid == "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10"


@pytest.mark.parametrize(
    ("setting", "sent_type"),
    [(None, None), ("OTP", "OTP"), ("txn", "TXN"), ("Mkt", "MKT"), ("DEFAULT", "DEFAULT")],
)
def test_type_is_sent_only_when_configured(make_provider, http, setting, sent_type):
    form = dict(FORM) if sent_type is None else {**FORM, "type": sent_type}
    expect_send(http, json_body=SUCCESS, form=form)
    overrides = {} if setting is None else {"KALEYRA_SMS_TYPE": setting}
    make_provider(**overrides).send(MESSAGE)


@pytest.mark.parametrize("host", ["https://api.in.kaleyra.io", "https://api.ap.kaleyra.io/"])
def test_regional_base_url_is_used(make_provider, http, host):
    root = host.rstrip("/")
    expect_send(http, json_body=SUCCESS, url=f"{root}/v1/{SID}/messages")
    assert make_provider(KALEYRA_BASE_URL=host).send(MESSAGE).sid == SUCCESS["id"]


# -- send: failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code", "retry_after", "reason"),
    [
        (401, {"code": "E401", "message": "Invalid API key"}, None, ProviderAuthError, "E401", None, None),
        (403, {"error": {"code": "E403", "message": "Forbidden"}}, None,
         ProviderAuthError, "E403", None, None),
        (429, {"code": "E429", "message": "Too many requests"}, {"Retry-After": "7"},
         ProviderRateLimited, "E429", 7, "Too many requests"),
        (429, "", None, ProviderRateLimited, None, None, "HTTP 429"),
        (400, {"code": "E413", "message": "Invalid parameters", "error": {"to": "Invalid number"}}, None,
         MessageRejected, "E413", None, "Invalid parameters (to: Invalid number)"),
        (400, {"error": {"code": "E101", "message": "Invalid sender"}}, None,
         MessageRejected, "E101", None, "Invalid sender"),
        (400, {"error": {"sender": "Sender ID not approved", "to": "DND number"}}, None,
         MessageRejected, None, None, "sender: Sender ID not approved; to: DND number"),
        (422, {"error": "Bad Request", "message": "Invalid number"}, None,
         MessageRejected, None, None, "Invalid number (Bad Request)"),
        (400, {"error": "Missing body"}, None, MessageRejected, None, None, "Missing body"),
        (400, {"code": 4001, "message": "Invalid type"}, None, MessageRejected, 4001, None, "Invalid type"),
        (400, "Bad request", None, MessageRejected, None, None, "HTTP 400"),
        (409, {"code": "E409", "message": "Duplicate ref"}, None,
         MessageRejected, "E409", None, "Duplicate ref"),
        # The core treats a misrouted request (wrong base URL, proxy) as our failure, not a verdict.
        (404, {}, None, ProviderUnavailable, None, None, "HTTP 404"),
        (405, {"code": "E405", "message": "Method not allowed"}, None,
         ProviderUnavailable, "E405", None, None),
        (301, "", {"Location": "https://elsewhere.example/"}, ProviderUnavailable, None, None, "HTTP 301"),
        (500, {"code": "E500", "message": "Internal error"}, None, ProviderUnavailable, "E500", None, None),
        (503, "<html>down</html>", None, ProviderUnavailable, None, None, "HTTP 503"),
    ],
)
def test_send_error_mapping(make_provider, http, status, body, headers, error, code, retry_after, reason):
    if isinstance(body, dict):
        expect_send(http, status=status, json_body=body, headers=headers)
    else:
        expect_send(http, status=status, body=body, headers=headers)
    with pytest.raises(error) as caught:
        make_provider().send(MESSAGE)
    assert type(caught.value) is error
    assert caught.value.provider_code == code
    assert caught.value.http_status == status
    assert caught.value.retry_after == retry_after
    if reason:
        assert reason in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_long_reason_is_one_bounded_line(make_provider, http):
    expect_send(http, status=400, json_body={"code": "E413", "message": "bad\nthing " * 200})
    with pytest.raises(MessageRejected) as caught:
        make_provider().send(MESSAGE)
    text = str(caught.value)
    assert "\n" not in text
    assert len(text) <= 250


@pytest.mark.parametrize(
    ("status", "body", "code", "reason"),
    [
        (200, {**SUCCESS, "error": {"code": "E413", "message": "Invalid number"}}, "E413", "Invalid number"),
        (202, {"error": {"code": "E604", "message": "Insufficient balance"}}, "E604", "Insufficient balance"),
        (200, {"code": "E101", "message": "Invalid sender", "error": {"sender": "not approved"}},
         "E101", "Invalid sender (sender: not approved)"),
        (200, {**SUCCESS, "error": "Template not found"}, None, "Template not found"),
    ],
)
def test_2xx_with_an_error_is_rejected(make_provider, http, status, body, code, reason):
    expect_send(http, status=status, json_body=body)
    with pytest.raises(MessageRejected) as caught:
        make_provider().send(MESSAGE)
    assert caught.value.provider_code == code
    assert caught.value.http_status == status
    assert reason in str(caught.value)


@pytest.mark.parametrize("error", [{}, None, ""])
def test_2xx_with_an_empty_error_is_success(make_provider, http, error):
    expect_send(http, json_body={**SUCCESS, "error": error})
    assert make_provider().send(MESSAGE).sid == SUCCESS["id"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("OK", "not JSON"),
        ("", "not JSON"),
        (json.dumps([SUCCESS]), "not a JSON object"),
        (json.dumps({"totalCount": 1, "error": {}}), "answer lacks the message id"),
        (json.dumps({"id": "", "data": []}), "answer lacks the message id"),
        (json.dumps({"id": 17, "data": [{"recipient": "917499623342"}]}), "answer lacks the message id"),
        (json.dumps({"data": "d0b238ef"}), "answer lacks the message id"),
    ],
)
def test_unreadable_2xx_is_unavailable(make_provider, http, body, words):
    expect_send(http, status=200, body=body)
    with pytest.raises(ProviderUnavailable) as caught:
        make_provider().send(MESSAGE)
    assert words in str(caught.value)


# -- balance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "amount", "currency"),
    [
        ({"code": "RBC103", "message": "Request successfully executed!",
          "data": [{"balance": "125.50", "currency": "USD"}]}, Decimal("125.50"), "USD"),
        ({"data": {"balance": 0, "currency_symbol": "\u20b9"}}, Decimal("0"), "\u20b9"),
        ({"data": [{"balance": "-3.2", "currency_code": "EUR"}]}, Decimal("-3.2"), "EUR"),
        ({"data": [{"balance": 12.75}]}, Decimal("12.75"), ""),
    ],
)
def test_balance(make_provider, http, body, amount, currency):
    expect_balance(http, json_body=body)
    balance = make_provider().balance()
    assert balance.amount == amount
    assert balance.currency == currency


def test_balance_path_and_fields_are_configurable(make_provider, http):
    expect_balance(
        http, url=f"{BASE}/v1/{SID}/billing/balance",
        json_body={"account": {"prepaid": {"balance_amount": "9.99"}}, "meta": {"currency": "INR"}},
    )
    provider = make_provider(
        KALEYRA_BALANCE_PATH="/v1/{sid}/billing/balance",
        KALEYRA_BALANCE_FIELD="account.prepaid.balance_amount",
        KALEYRA_BALANCE_CURRENCY_FIELD="meta.currency",
    )
    assert provider.balance() == Balance(amount=Decimal("9.99"), currency="INR")


@pytest.mark.parametrize(("field", "amount"), [("data.1.balance", Decimal("2")), ("data.\u0661.balance", None)])
def test_balance_field_indexes_are_ascii_digits(make_provider, http, field, amount):
    # int() reads Arabic-Indic digits; as a list index they would pick a record silently.
    expect_balance(http, json_body={"data": [{"balance": "1"}, {"balance": "2"}]})
    provider = make_provider(KALEYRA_BALANCE_FIELD=field)
    if amount is None:
        with pytest.raises(ProviderUnavailable, match="KALEYRA_BALANCE_FIELD"):
            provider.balance()
    else:
        assert provider.balance().amount == amount


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"balance": "abc"}]},
        {"data": [{"balance": "NaN"}]},
        {"data": [{"balance": "Infinity"}]},
        {"data": [{"balance": True}]},
        {"data": [{"balance": None}]},
        {"data": [{"usage_amount": "50"}]},
        {"data": []},
        {"data": "125.50"},
        {},
        [{"balance": "1"}],
        "not json",
    ],
)
def test_malformed_balance_is_unavailable(make_provider, http, body):
    if isinstance(body, str):
        expect_balance(http, body=body)
    else:
        expect_balance(http, body=json.dumps(body))
    with pytest.raises(ProviderUnavailable):
        make_provider().balance()


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code"),
    [
        (401, {"code": "E401", "message": "Invalid API key"}, None, ProviderAuthError, "E401"),
        (403, {}, None, ProviderAuthError, None),
        (404, {"code": "E404", "message": "Not found"}, None, ProviderUnavailable, "E404"),
        (400, {"code": "RBC2323", "message": "Balance not available"}, None, ProviderUnavailable, "RBC2323"),
        (429, {}, {"Retry-After": "3"}, ProviderRateLimited, None),
        (502, {}, None, ProviderUnavailable, None),
    ],
)
def test_balance_error_mapping(make_provider, http, status, body, headers, error, code):
    expect_balance(http, status=status, json_body=body, headers=headers)
    with pytest.raises(error) as caught:
        make_provider().balance()
    assert type(caught.value) is error
    assert caught.value.provider_code == code
    assert caught.value.http_status == status
    if status == 429:
        assert caught.value.retry_after == 3


def test_balance_timeout(make_provider, http):
    http.add(responses.GET, BALANCE_URL, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(ProviderTimeout):
        make_provider().balance()


def test_close_is_idempotent(make_provider):
    provider = make_provider()
    provider.close()
    provider.close()
