"""TwilioProvider.__init__: which TWILIO_* values it accepts, and how it refuses the rest."""

from __future__ import annotations

import pytest
import responses
from responses import matchers
from twilio_fakes import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    KEY_AUTH,
    TOKEN_AUTH,
    basic,
)

from sms_service.exceptions import ConfigError
from sms_service_twilio.provider import TwilioProvider

TOKEN = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
KEY = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY_SID": API_KEY_SID,
       "TWILIO_API_KEY_SECRET": API_KEY_SECRET}
SWAPPED = {"TWILIO_ACCOUNT_SID": AUTH_TOKEN, "TWILIO_AUTH_TOKEN": ACCOUNT_SID}


def without(env, *names):
    return {k: v for k, v in env.items() if k not in names}


@pytest.mark.parametrize(
    ("env", "variable", "secret"),
    [
        ({}, "TWILIO_ACCOUNT_SID", None),
        (without(TOKEN, "TWILIO_ACCOUNT_SID"), "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": ""}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": "AC123"}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": "SK" + "0" * 32}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": "AC" + "g" * 32}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID + "\n"}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_ACCOUNT_SID": " " + ACCOUNT_SID}, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        # Swapped values: the token is in the SID slot and must not be echoed.
        (SWAPPED, "TWILIO_ACCOUNT_SID", AUTH_TOKEN),
        (without(TOKEN, "TWILIO_AUTH_TOKEN"), "TWILIO_AUTH_TOKEN", None),
        ({**TOKEN, "TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN", None),
        ({**TOKEN, "TWILIO_AUTH_TOKEN": AUTH_TOKEN + "\n"}, "TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_AUTH_TOKEN": "tök" + AUTH_TOKEN}, "TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_AUTH_TOKEN": "   "}, "TWILIO_AUTH_TOKEN", None),
        (without(KEY, "TWILIO_API_KEY_SECRET"), "TWILIO_API_KEY_SECRET", None),
        (without(KEY, "TWILIO_API_KEY_SID"), "TWILIO_API_KEY_SID", API_KEY_SECRET),
        ({**KEY, "TWILIO_API_KEY_SID": "AC" + "0" * 32}, "TWILIO_API_KEY_SID", API_KEY_SECRET),
        ({**KEY, "TWILIO_API_KEY_SID": API_KEY_SECRET}, "TWILIO_API_KEY_SID", API_KEY_SECRET),
        ({**KEY, "TWILIO_API_KEY_SECRET": API_KEY_SECRET + " "}, "TWILIO_API_KEY_SECRET",
         API_KEY_SECRET),
        # Both kinds of credential at once: refused rather than silently choosing one.
        ({**KEY, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}, "TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "api.twilio.com"}, "TWILIO_BASE_URL", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "ftp://api.twilio.com"}, "TWILIO_BASE_URL", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "https://"}, "TWILIO_BASE_URL", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "https://api.twilio.com:99999"}, "TWILIO_BASE_URL",
         AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "https://api.twilio.com/?x=1"}, "TWILIO_BASE_URL",
         AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "https://api.twilio.com/#frag"}, "TWILIO_BASE_URL",
         AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": "https://api.twilio .com"}, "TWILIO_BASE_URL", AUTH_TOKEN),
        ({**TOKEN, "TWILIO_BASE_URL": f"https://u:{AUTH_TOKEN}@api.twilio.com"},
         "TWILIO_BASE_URL", AUTH_TOKEN),
    ],
)
def test_bad_configuration_names_the_variable_and_hides_secrets(env, variable, secret):
    with pytest.raises(ConfigError) as caught:
        TwilioProvider(env, timeout=5)
    text = str(caught.value)
    assert variable in text
    assert "\n" not in text
    if secret is not None:
        assert secret not in text


def test_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        TwilioProvider({}, timeout=5)


@pytest.mark.parametrize(
    ("base_url", "expected_root"),
    [
        (None, "https://api.twilio.com"),
        ("", "https://api.twilio.com"),
        ("https://api.dublin.ie1.twilio.com", "https://api.dublin.ie1.twilio.com"),
        ("https://api.twilio.com/", "https://api.twilio.com"),
        ("http://127.0.0.1:8081//", "http://127.0.0.1:8081"),
        ("http://localhost:9000/fake/twilio/", "http://localhost:9000/fake/twilio"),
    ],
)
def test_base_url_builds_the_endpoint_urls(token_env, base_url, expected_root):
    if base_url is not None:
        token_env["TWILIO_BASE_URL"] = base_url
    provider = TwilioProvider(token_env, timeout=5)
    root = f"{expected_root}/2010-04-01/Accounts/{ACCOUNT_SID}"
    assert provider.messages_url == f"{root}/Messages.json"
    assert provider.balance_url == f"{root}/Balance.json"
    provider.close()


def test_uppercase_hex_sids_are_accepted():
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID.upper(), "TWILIO_API_KEY_SID": API_KEY_SID.upper(),
           "TWILIO_API_KEY_SECRET": API_KEY_SECRET}
    TwilioProvider(env, timeout=5).close()


@pytest.mark.parametrize(
    ("env", "authorization"),
    [
        (TOKEN, TOKEN_AUTH),
        (KEY, KEY_AUTH),
        # An empty TWILIO_AUTH_TOKEN counts as unset, so the key pair is used alone.
        ({**KEY, "TWILIO_AUTH_TOKEN": ""}, KEY_AUTH),
    ],
)
def test_credentials_go_in_basic_auth_with_the_account_sid_in_the_path(env, authorization):
    provider = TwilioProvider(env, timeout=5)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.get(
            f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Balance.json",
            json={"account_sid": ACCOUNT_SID, "balance": "1.00", "currency": "USD"},
            match=[matchers.header_matcher({"Authorization": authorization})],
        )
        provider.balance()
    provider.close()


def test_repr_shows_no_secret(token_env, key_env):
    for env in (token_env, key_env):
        provider = TwilioProvider(env, timeout=5)
        text = repr(provider) + str(vars(provider))
        assert AUTH_TOKEN not in text and API_KEY_SECRET not in text
        assert basic(ACCOUNT_SID, AUTH_TOKEN) not in text
        provider.close()
