"""Shared fixtures for the Twilio provider tests: credentials, a provider, a strict HTTP fake."""

from __future__ import annotations

import pytest
import responses
from twilio_fakes import ACCOUNT_SID, API_KEY_SECRET, API_KEY_SID, AUTH_TOKEN

from sms_service.provider import Message
from sms_service_twilio.provider import TwilioProvider


@pytest.fixture
def token_env() -> dict[str, str]:
    """Account SID + auth token, with unrelated keys the provider must ignore."""
    return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "KALEYRA_API_KEY": "not-ours", "SERVICE_PROVIDER": "twilio"}


@pytest.fixture
def key_env() -> dict[str, str]:
    """Account SID + API key pair."""
    return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_API_KEY_SID": API_KEY_SID,
            "TWILIO_API_KEY_SECRET": API_KEY_SECRET}


@pytest.fixture
def provider(token_env):
    """A provider authenticating with the auth token."""
    p = TwilioProvider(token_env, timeout=5)
    yield p
    p.close()


@pytest.fixture
def http():
    """A fake Twilio that fails the test on any unexpected or missing call."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def message() -> Message:
    """A message whose body needs real form encoding (&, =, +, newline, non-ASCII)."""
    return Message(sender="+15005550006", receiver="+15558675310",
                   body="Code: 1234 & more = fine +\nÀ bientôt 🙂", num_segments=1,
                   encoding="UCS-2")
