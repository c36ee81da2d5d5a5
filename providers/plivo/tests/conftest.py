"""Shared fixtures for the Plivo provider tests: a provider, a strict HTTP fake, a message."""

from __future__ import annotations

import pytest
import responses
from plivo_fakes import AUTH_ID, AUTH_TOKEN, CALLBACK

from sms_service.provider import Message
from sms_service_plivo.provider import PlivoProvider


@pytest.fixture
def env() -> dict[str, str]:
    """Plivo credentials, with unrelated keys the provider must ignore."""
    return {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_AUTH_TOKEN": "not-ours"}


@pytest.fixture
def provider(env):
    """A provider with status callbacks on."""
    p = PlivoProvider(env, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


@pytest.fixture
def http():
    """A fake Plivo that fails the test on any unexpected or missing call."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def message() -> Message:
    """A message whose body needs real JSON escaping (quotes, newline, non-ASCII)."""
    return Message(sender="+14156667777", receiver="+14155550123",
                   body='Code: "1234" & more\nÀ bientôt 🙂', num_segments=1, encoding="UCS-2")
